package broker_test

import (
	"context"
	"fmt"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/comet-go/comet/bus"
	"github.com/comet-go/comet/endpoint"
	"github.com/comet-go/comet/internal/broker"
	"github.com/comet-go/comet/internal/vtptest"
)

// A configuration that contradicts itself or sets a negative limit is
// refused by Start with an error naming it, and leaves nothing bound: a
// part given its own value of a shared setting (LocalIVO, MaxEventSize)
// is not silently overridden, and a negative limit is not taken for the
// default.
func TestContradictoryOrNegativeConfigRefusedAtStart(t *testing.T) {
	for name, c := range map[string]struct {
		mutate func(*broker.Config)
		want   string
	}{
		"a receiver with its own LocalIVO": {func(c *broker.Config) { c.Receiver.LocalIVO = "ivo://other.example/x" },
			"Receiver.LocalIVO is ivo://other.example/x but the broker's setting is " + localIVO},
		"a broadcaster with its own MaxFrame": {func(c *broker.Config) { c.MaxEventSize = 6000; c.Broadcaster.MaxFrame = 5000 },
			"Broadcaster.MaxFrame is 5000 but the broker's setting is 6000"},
		"a negative MaxEventSize":     {func(c *broker.Config) { c.MaxEventSize = -1 }, "MaxEventSize -1 or FilterBudget 0 is negative"},
		"a negative subscriber queue": {func(c *broker.Config) { c.Broadcaster.QueueLen = -1 }, "egress: negative limit"},
		"a negative receive timeout":  {func(c *broker.Config) { c.Receiver.Timeout = -time.Second }, "ingress: receiver: negative limit"},
	} {
		t.Run(name, func(t *testing.T) {
			ports := vtptest.FreePorts(t, 2)
			addr := func(p int) string { return fmt.Sprintf("127.0.0.1:%d", p) }
			cfg := broker.Config{
				Receive:   []endpoint.Endpoint{{Network: "tcp", Address: addr(ports[0])}},
				Broadcast: []endpoint.Endpoint{{Network: "tcp", Address: addr(ports[1])}},
				LocalIVO:  localIVO,
				Node:      "test",
				Bus:       bus.Config{StoreDir: t.TempDir()},
				Logger:    quietLogger(),
			}
			c.mutate(&cfg)
			b, err := broker.Start(context.Background(), cfg)
			if err == nil {
				b.Shutdown(context.Background())
				t.Fatalf("started; want an error with %q", c.want)
			}
			if !strings.Contains(err.Error(), c.want) {
				t.Errorf("error %q; want it to say %q", err, c.want)
			}
			for _, p := range ports {
				ln, err := net.Listen("tcp", addr(p))
				if err != nil {
					t.Errorf("port %d still bound after the refusal: %v", p, err)
					continue
				}
				ln.Close()
			}
		})
	}
}
