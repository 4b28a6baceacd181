package vtptest

import (
	"fmt"
	"math/rand/v2"
	"net"
	"sync"
	"testing"
)

// Ports for processes a test starts are chosen below the kernel's
// ephemeral range (Linux's default starts at 32768; macOS's and Windows's
// at 49152). A port from 127.0.0.1:0 is an ephemeral one: until the
// process binds it, another process's outgoing connection may take it as
// its source port, and a subscriber retrying towards it may connect to
// itself from it, and the process then fails with "address in use".
const (
	freePortsFrom = 20000
	freePortsTo   = 32768
)

// portCursor is where this test process looks for its next free port: it
// starts at a random point of the range, so that test processes running
// side by side seldom try the same ports, and moves past every port handed
// out, so that no two calls in one process return the same port even
// before the first caller has bound it.
var portCursor struct {
	sync.Mutex
	next    int
	started bool
}

// FreePorts returns n distinct loopback ports, each free when checked (all
// held at once, then released), none returned before by this process.
func FreePorts(t testing.TB, n int) []int {
	t.Helper()
	const span = freePortsTo - freePortsFrom
	portCursor.Lock()
	defer portCursor.Unlock()
	if !portCursor.started {
		portCursor.next, portCursor.started = rand.IntN(span), true
	}
	var lns []net.Listener
	defer func() {
		for _, ln := range lns {
			ln.Close()
		}
	}()
	ports := make([]int, 0, n)
	for i := 0; i < span && len(ports) < n; i++ {
		port := freePortsFrom + portCursor.next%span
		portCursor.next++
		ln, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", port))
		if err != nil {
			continue // in use
		}
		lns = append(lns, ln)
		ports = append(ports, port)
	}
	if len(ports) < n {
		t.Fatalf("found %d free ports of %d in %d-%d", len(ports), n, freePortsFrom, freePortsTo-1)
	}
	return ports
}
