package observe

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// The HTTP server's limits, as net/http's fields. Every answer is small and
// made from memory or a bounded bus request, so they can be short.
const (
	ReadHeaderTimeout = 5 * time.Second
	// WriteTimeout covers the slowest answer: a scrape or a page whose bus
	// requests take their whole ScrapeTimeout.
	WriteTimeout   = 15 * time.Second
	IdleTimeout    = 60 * time.Second
	MaxHeaderBytes = 16 << 10
	// PageTimeout bounds what one page load or /status.json asks of the
	// bus.
	PageTimeout = ScrapeTimeout
)

// Paths served.
const (
	PathMetrics = "/metrics"
	PathHealthz = "/healthz"
	PathReadyz  = "/readyz"
	PathStatus  = "/status.json"
	PathPage    = "/"
)

// Server serves metrics, health and the status page on one listener.
type Server struct {
	srv  *http.Server
	ln   net.Listener
	done chan struct{}
	err  error
}

// NewHandler routes the paths above: /metrics from m, /healthz (always
// 200 while the process serves), /readyz from ready, and the status page
// and /status.json from src (whose Status runs the same checks).
func NewHandler(src Source, ready *Readiness, m *Metrics, log *slog.Logger) http.Handler {
	h := &handler{src: src, ready: ready, log: log}
	mux := http.NewServeMux()
	mux.Handle("GET "+PathMetrics, promhttp.HandlerFor(m.Registry(), promhttp.HandlerOpts{
		ErrorLog: slog.NewLogLogger(log.Handler(), slog.LevelWarn), Timeout: WriteTimeout - time.Second,
	}))
	mux.HandleFunc("GET "+PathHealthz, func(w http.ResponseWriter, _ *http.Request) {
		plain(w)
		fmt.Fprintln(w, "ok")
	})
	mux.HandleFunc("GET "+PathReadyz, h.readyz)
	mux.HandleFunc("GET "+PathStatus, h.statusJSON)
	mux.HandleFunc("GET /{$}", h.page)
	return mux
}

// Serve serves handler on ln until Close.
func Serve(ln net.Listener, handler http.Handler, log *slog.Logger) *Server {
	s := &Server{
		srv: &http.Server{Handler: handler, ReadHeaderTimeout: ReadHeaderTimeout, WriteTimeout: WriteTimeout,
			IdleTimeout: IdleTimeout, MaxHeaderBytes: MaxHeaderBytes,
			ErrorLog: slog.NewLogLogger(log.Handler(), slog.LevelDebug)},
		ln: ln, done: make(chan struct{}),
	}
	go func() {
		defer close(s.done)
		if err := s.srv.Serve(ln); !errors.Is(err, http.ErrServerClosed) {
			s.err = err
		}
	}()
	log.Info("serving metrics, health and status", "url", "http://"+ln.Addr().String()+"/")
	return s
}

// Addr is the address served.
func (s *Server) Addr() net.Addr { return s.ln.Addr() }

// Open reports whether the server still serves (its listener is open).
func (s *Server) Open() bool {
	select {
	case <-s.done:
		return false
	default:
		return true
	}
}

// Close stops the server, letting requests under way finish until ctx
// ends, and waits for it.
func (s *Server) Close(ctx context.Context) error {
	err := s.srv.Shutdown(ctx)
	if err != nil {
		s.srv.Close()
	}
	<-s.done
	return errors.Join(err, s.err)
}

type handler struct {
	src   Source
	ready *Readiness
	log   *slog.Logger
}

func plain(w http.ResponseWriter) {
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
}

// readyz is 200 "ready", or 503 with the failed checks in one line.
func (h *handler) readyz(w http.ResponseWriter, r *http.Request) {
	ok, why := Ready(h.ready.Run(r.Context()))
	plain(w)
	if !ok {
		w.WriteHeader(http.StatusServiceUnavailable)
		fmt.Fprintln(w, "not ready: "+why)
		return
	}
	fmt.Fprintln(w, "ready")
}

// status gathers what the page and /status.json show.
func (h *handler) status(r *http.Request) *Status {
	ctx, cancel := context.WithTimeout(r.Context(), PageTimeout)
	defer cancel()
	return h.src.Status(ctx, Want{Bus: true, Events: RecentEvents})
}

func (h *handler) statusJSON(w http.ResponseWriter, r *http.Request) {
	st := h.status(r)
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	if err := enc.Encode(st); err != nil {
		h.log.Debug("status.json not sent", "err", err)
	}
}

func (h *handler) page(w http.ResponseWriter, r *http.Request) {
	st := h.status(r)
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	// No script, no remote resource: the page works offline and cannot be
	// made to run anything.
	w.Header().Set("Content-Security-Policy", "default-src 'none'; style-src 'unsafe-inline'; img-src data:; frame-ancestors 'none'")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	w.Header().Set("Referrer-Policy", "no-referrer")
	if err := renderPage(w, st, time.Now()); err != nil {
		h.log.Debug("status page not sent", "err", err)
	}
}
