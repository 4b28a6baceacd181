// Package whitelist decides which peers may connect to a listener
// (--receive-whitelist, --broadcast-whitelist). Networks are written as CIDR
// (127.0.0.0/8, ::1/128) or as address/netmask (127.0.0.1/255.255.255.255,
// Comet 2012's form). Host bits may be set, as Comet 2012 allowed; they are
// masked off.
package whitelist

import (
	"fmt"
	"net"
	"net/netip"
	"os"
	"strings"
	"sync/atomic"
)

// Default allows every IPv4 and IPv6 peer. (Comet's default, 0.0.0.0/0,
// silently refuses IPv6 peers; a broker that listens on IPv6 should not.)
var Default = []string{"0.0.0.0/0", "::/0"}

// ParseNetwork parses one network in CIDR or address/netmask form. A bare
// address means that single host.
func ParseNetwork(s string) (netip.Prefix, error) {
	s = strings.TrimSpace(s)
	addrPart, maskPart, hasMask := strings.Cut(s, "/")
	addr, err := netip.ParseAddr(addrPart)
	if err != nil {
		return netip.Prefix{}, fmt.Errorf("invalid network %q: %v", s, err)
	}
	addr = addr.Unmap()
	if !hasMask {
		return netip.PrefixFrom(addr, addr.BitLen()), nil
	}
	var bits int
	if strings.ContainsAny(maskPart, ".:") {
		mask, err := netip.ParseAddr(maskPart)
		if err != nil || mask.Unmap().BitLen() != addr.BitLen() {
			return netip.Prefix{}, fmt.Errorf("invalid network %q: bad netmask %q", s, maskPart)
		}
		ones, total := net.IPMask(mask.Unmap().AsSlice()).Size()
		if total == 0 {
			return netip.Prefix{}, fmt.Errorf("invalid network %q: netmask %q is not contiguous", s, maskPart)
		}
		bits = ones
	} else {
		if _, err := fmt.Sscanf(maskPart, "%d", &bits); err != nil || fmt.Sprint(bits) != maskPart ||
			bits < 0 || bits > addr.BitLen() {
			return netip.Prefix{}, fmt.Errorf("invalid network %q: bad prefix length %q", s, maskPart)
		}
	}
	return netip.PrefixFrom(addr, bits).Masked(), nil
}

// List is a set of allowed networks. Its contents can be replaced while
// listeners consult it (a reload on SIGHUP), without locks on the accept path.
type List struct {
	nets atomic.Pointer[[]netip.Prefix]
}

// New parses specs. An empty slice yields a list that refuses every TCP
// peer (Comet latest: a whitelist option given without value).
func New(specs []string) (*List, error) {
	l := &List{}
	if err := l.Set(specs); err != nil {
		return nil, err
	}
	return l, nil
}

// MustDefault is the allow-all list.
func MustDefault() *List {
	l, err := New(Default)
	if err != nil {
		panic(err)
	}
	return l
}

// Set atomically replaces the networks; on error the list is unchanged.
func (l *List) Set(specs []string) error {
	nets := make([]netip.Prefix, 0, len(specs))
	for _, s := range specs {
		for _, part := range strings.Fields(strings.ReplaceAll(s, ",", " ")) {
			p, err := ParseNetwork(part)
			if err != nil {
				return err
			}
			nets = append(nets, p)
		}
	}
	l.nets.Store(&nets)
	return nil
}

// Networks returns the current networks in CIDR form.
func (l *List) Networks() []string {
	nets := *l.nets.Load()
	out := make([]string, len(nets))
	for i, n := range nets {
		out[i] = n.String()
	}
	return out
}

// Allows reports whether a peer at addr may connect. Unix-socket peers are
// always allowed (file permissions guard them), as in Comet.
func (l *List) Allows(addr net.Addr) bool {
	var ip netip.Addr
	switch a := addr.(type) {
	case *net.TCPAddr:
		ip, _ = netip.AddrFromSlice(a.IP)
	case *net.UnixAddr:
		return true
	default:
		ap, err := netip.ParseAddrPort(addr.String())
		if err != nil {
			return false
		}
		ip = ap.Addr()
	}
	ip = ip.Unmap()
	for _, n := range *l.nets.Load() {
		if n.Contains(ip) {
			return true
		}
	}
	return false
}

// ReadFile reads networks from a file: any number per line, separated by
// spaces or commas; '#' starts a comment. Each network is checked.
func ReadFile(path string) ([]string, error) {
	return readList(path, func(line string) []string {
		return strings.Fields(strings.ReplaceAll(line, ",", " "))
	}, func(s string) error {
		_, err := ParseNetwork(s)
		return err
	})
}

// readList reads a list file, one format for the network and fingerprint
// lists: '#' starts a comment, fields splits what is left of a line into
// entries, and an entry check refuses is an error naming its line.
func readList(path string, fields func(string) []string, check func(string) error) ([]string, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var out []string
	for i, line := range strings.Split(string(data), "\n") {
		line, _, _ = strings.Cut(line, "#")
		for _, f := range fields(line) {
			if err := check(f); err != nil {
				return nil, fmt.Errorf("%s:%d: %w", path, i+1, err)
			}
			out = append(out, f)
		}
	}
	return out, nil
}
