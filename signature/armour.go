package signature

import (
	"bytes"
	"encoding/base64"
	"errors"
	"fmt"
)

// errNoArmour means no further "-----BEGIN ...-----" line was found.
var errNoArmour = errors.New("no ASCII armour found")

// decodeArmour reads the first ASCII-armoured block in data, ignoring text
// before it, and returns its type ("PGP SIGNATURE"), its decoded contents
// and the data after its END line. It is stricter than go-crypto's decoder,
// which ignores the CRC: a present CRC must match, the END line must be there
// and name the same type, so a damaged or truncated block is reported as
// such instead of as a bad signature. Armour headers are accepted and
// ignored.
func decodeArmour(data []byte) (typ string, body, rest []byte, err error) {
	var line []byte
	rest = data
	for {
		if len(rest) == 0 {
			return "", nil, nil, errNoArmour
		}
		line, rest = nextLine(rest)
		if bytes.HasPrefix(line, []byte("-----BEGIN ")) && bytes.HasSuffix(line, []byte("-----")) && len(line) > len("-----BEGIN -----") {
			break
		}
	}
	typ = string(line[len("-----BEGIN ") : len(line)-len("-----")])
	endLine := "-----END " + typ + "-----"
	var (
		b64       []byte
		crc       []byte
		inHeaders = true
	)
	for {
		if len(rest) == 0 {
			return "", nil, nil, fmt.Errorf("truncated armour: no %q line", endLine)
		}
		line, rest = nextLine(rest)
		if inHeaders {
			switch {
			case len(line) == 0:
				inHeaders = false
				continue
			case bytes.IndexByte(line, ':') > 0 && !bytes.HasPrefix(line, []byte("-----")):
				continue // "Key: value"
			}
			inHeaders = false // tolerate a missing blank line: this starts the data
		}
		if bytes.HasPrefix(line, []byte("-----")) {
			if string(line) != endLine {
				return "", nil, nil, fmt.Errorf("armour: expected %q, found %q", endLine, truncate(line))
			}
			break
		}
		switch {
		case len(line) == 0:
		case crc != nil:
			return "", nil, nil, errors.New("armour: data after the checksum line")
		case line[0] == '=' && len(line) == 5:
			crc = line[1:]
		default:
			b64 = append(b64, line...)
		}
	}
	body = make([]byte, base64.StdEncoding.DecodedLen(len(b64)))
	n, err := base64.StdEncoding.Decode(body, b64)
	if err != nil {
		return "", nil, nil, fmt.Errorf("armour: bad base64: %w", err)
	}
	body = body[:n]
	if n == 0 {
		return "", nil, nil, errors.New("armour: no data")
	}
	if crc != nil {
		var sum [3]byte
		if m, err := base64.StdEncoding.Decode(sum[:], crc); err != nil || m != 3 {
			return "", nil, nil, fmt.Errorf("armour: bad checksum line %q", crc)
		}
		if got := crc24(body); got != uint32(sum[0])<<16|uint32(sum[1])<<8|uint32(sum[2]) {
			return "", nil, nil, errors.New("armour: checksum mismatch (damaged or truncated block)")
		}
	}
	return typ, body, rest, nil
}

// nextLine splits off the first line of data, without its line end and
// surrounding white space.
func nextLine(data []byte) (line, rest []byte) {
	if i := bytes.IndexByte(data, '\n'); i >= 0 {
		return bytes.TrimSpace(data[:i]), data[i+1:]
	}
	return bytes.TrimSpace(data), nil
}

// truncate shortens hostile input quoted in error messages.
func truncate(b []byte) []byte {
	if len(b) > 40 {
		return b[:40]
	}
	return b
}

// crc24 is the armour checksum of RFC 4880 §6.1.
func crc24(data []byte) uint32 {
	const (
		init = 0xB704CE
		poly = 0x1864CFB
	)
	crc := uint32(init)
	for _, b := range data {
		crc ^= uint32(b) << 16
		for i := 0; i < 8; i++ {
			crc <<= 1
			if crc&0x1000000 != 0 {
				crc ^= poly
			}
		}
	}
	return crc & 0xFFFFFF
}
