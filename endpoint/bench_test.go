package endpoint_test

import (
	"context"
	"fmt"
	"net"
	"testing"
	"time"

	"github.com/comet-go/comet/endpoint"
	"github.com/comet-go/comet/internal/tlstest"
)

// BenchmarkHandshake is one connection to an ssl: listener from a tls:
// target (ECDSA P-256 certificates, TLS 1.3, loopback): connect and
// handshake on both sides, as every VTP submission over TLS does; plain
// is the same connection without TLS.
func BenchmarkHandshake(b *testing.B) {
	dir := b.TempDir()
	ca := tlstest.NewCA(b, "Bench CA")
	ca.WriteFile(dir, "ca.pem")
	cert, key := ca.Issue(tlstest.Options{CN: "bench", Names: []string{"127.0.0.1"}}).WriteFiles(dir, "server")
	client, clientKey := ca.Issue(tlstest.Options{CN: "author"}).WriteFiles(dir, "author")
	for _, c := range []struct{ name, server, client string }{
		{"plain", "tcp:0:interface=127.0.0.1", "tcp:127.0.0.1:%s"},
		{"tls", "ssl:0:interface=127.0.0.1:privateKey=" + key + ":certKey=" + cert, "tls:127.0.0.1:%s:trustRoots=" + dir},
		{"mtls", "ssl:0:interface=127.0.0.1:privateKey=" + key + ":certKey=" + cert + ":clientCA=" + dir + "/ca.pem",
			"tls:127.0.0.1:%s:trustRoots=" + dir + ":certificate=" + client + ":privateKey=" + clientKey},
	} {
		b.Run(c.name, func(b *testing.B) {
			ep, err := endpoint.ParseServer(c.server)
			if err != nil {
				b.Fatal(err)
			}
			ln, err := ep.Listen()
			if err != nil {
				b.Fatal(err)
			}
			defer ln.Close()
			go func() {
				for {
					conn, err := ln.Accept()
					if err != nil {
						return
					}
					go func() {
						defer conn.Close()
						var c net.Conn = conn
						if tl, ok := ln.(*endpoint.TLSListener); ok {
							if c, err = tl.Handshake(conn, time.Now().Add(10*time.Second)); err != nil {
								return
							}
						}
						c.Write([]byte{1})
						c.Close()
					}()
				}
			}()
			_, port, _ := net.SplitHostPort(ln.Addr().String())
			target, err := endpoint.ParseClient(fmt.Sprintf(c.client, port), 0)
			if err != nil {
				b.Fatal(err)
			}
			d, err := endpoint.NewDialer(target, 10*time.Second)
			if err != nil {
				b.Fatal(err)
			}
			one := make([]byte, 1)
			for b.Loop() {
				conn, err := d.Dial(context.Background())
				if err != nil {
					b.Fatal(err)
				}
				if _, err := conn.Read(one); err != nil {
					b.Fatal(err)
				}
				conn.Close()
			}
		})
	}
}
