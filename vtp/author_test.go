package vtp

import (
	"context"
	"errors"
	"net"
	"strings"
	"testing"
	"time"
)

// fakeReceiver answers each connection with serve, then closes it unless
// serve says to keep it open.
func fakeReceiver(t *testing.T, serve func(c net.Conn) (keepOpen bool)) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				if !serve(c) {
					c.Close()
					return
				}
				t.Cleanup(func() { c.Close() })
			}()
		}
	}()
	return ln.Addr().String()
}

// The receipt is the ack or nak whose Origin is the event's ivorn; other
// messages are skipped and reported.
func TestAuthorWaitsForItsReceipt(t *testing.T) {
	const ivorn = "ivo://test.example/author#1"
	addr := fakeReceiver(t, func(c net.Conn) bool {
		p, err := NewFrameReader(c, 0).ReadFrame()
		if err != nil || string(p) != "<event/>" {
			return false
		}
		now := time.Now()
		WriteFrame(c, IAmAlive("ivo://test.example/broker", "", now))
		WriteFrame(c, []byte("not xml"))
		WriteFrame(c, Ack("ivo://test.example/other#9", "", now))
		WriteFrame(c, Nak(ivorn, "ivo://test.example/broker", "Event rejected: no", now))
		return false
	})
	var skipped, unparsable int
	a := Author{Timeout: 5 * time.Second, CloseWait: time.Second, Skipped: func(m *Message, err error) {
		if err != nil {
			unparsable++
		} else {
			skipped++
		}
	}}
	rc, err := a.Submit(context.Background(), "tcp", addr, []byte("<event/>"), ivorn)
	if err != nil {
		t.Fatal(err)
	}
	if rc.Role != RoleNak || rc.Origin != ivorn || rc.Result != "Event rejected: no" || rc.LeftOpen || rc.At.IsZero() {
		t.Fatalf("receipt %+v", rc)
	}
	if skipped != 2 || unparsable != 1 {
		t.Errorf("skipped %d, unparsable %d; want 2 and 1", skipped, unparsable)
	}
}

func TestAuthorFailures(t *testing.T) {
	closing := fakeReceiver(t, func(c net.Conn) bool { // reads, then closes with no reply
		NewFrameReader(c, 0).ReadFrame()
		return false
	})
	silent := fakeReceiver(t, func(c net.Conn) bool { return true })
	open := fakeReceiver(t, func(c net.Conn) bool {
		NewFrameReader(c, 0).ReadFrame()
		WriteFrame(c, Ack("", "", time.Now()))
		return true
	})
	dead, _ := net.Listen("tcp", "127.0.0.1:0")
	deadAddr := dead.Addr().String()
	dead.Close()

	a := Author{Timeout: 300 * time.Millisecond, CloseWait: 100 * time.Millisecond}
	var se *SubmitError
	if _, err := a.Submit(t.Context(), "tcp", closing, []byte("x"), ""); !errors.Is(err, ErrNoReceipt) ||
		!errors.As(err, &se) || se.Step != StepReceipt {
		t.Errorf("closed without a receipt: %v", err)
	}
	var ne net.Error
	if _, err := a.Submit(t.Context(), "tcp", silent, []byte("x"), ""); !errors.As(err, &ne) || !ne.Timeout() ||
		!strings.HasPrefix(err.Error(), "no receipt within 300ms") {
		t.Errorf("no answer: %v", err)
	}
	if _, err := a.Submit(t.Context(), "tcp", deadAddr, []byte("x"), ""); !errors.As(err, &se) || se.Step != StepConnect {
		t.Errorf("nobody listening: %v", err)
	}
	// Any receipt will do with no ivorn; a broker that keeps the
	// connection open after it is noted.
	rc, err := a.Submit(t.Context(), "tcp", open, []byte("x"), "")
	if err != nil || rc.Role != RoleAck || !rc.LeftOpen {
		t.Errorf("left open: %+v %v", rc, err)
	}
	// The end of ctx ends a submission at once.
	ctx, cancel := context.WithCancel(t.Context())
	time.AfterFunc(50*time.Millisecond, cancel)
	b := Author{Timeout: time.Minute}
	start := time.Now()
	if _, err := b.Submit(ctx, "tcp", silent, []byte("x"), ""); err == nil || time.Since(start) > 10*time.Second {
		t.Errorf("cancelled: %v after %v", err, time.Since(start))
	}
}
