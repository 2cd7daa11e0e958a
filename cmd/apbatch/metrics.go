package main

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/rs/zerolog"
)

// metricsAddrHelp is the help of --metrics-addr.
const metricsAddrHelp = "serve /metrics (Prometheus), /healthz and /readyz on this address, e.g. :9464; empty: off (APBATCH_METRICS_ADDR)"

// newRegistry returns the process's metrics registry: the Go runtime's and
// the process's collectors, the roles add theirs.
func newRegistry() *prometheus.Registry {
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return reg
}

// readyTimeout bounds one /readyz check of the services.
const readyTimeout = 3 * time.Second

// metricsServer serves a registry on /metrics, /healthz (200 while the
// process runs) and /readyz (200 once SetReady's check passes, 503 with a
// short reason otherwise).
type metricsServer struct {
	srv   *http.Server
	ln    net.Listener
	wg    sync.WaitGroup
	ready atomic.Pointer[func(context.Context) error]
}

// startMetrics listens on addr and serves reg until Close.
func startMetrics(ctx context.Context, addr string, reg *prometheus.Registry, log zerolog.Logger) (*metricsServer, error) {
	var lc net.ListenConfig
	ln, err := lc.Listen(ctx, "tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("--metrics-addr: %w", err)
	}
	m := &metricsServer{ln: ln}
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{Registry: reg}))
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) { fmt.Fprintln(w, "ok") })
	mux.HandleFunc("GET /readyz", m.serveReady)
	m.srv = &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second, ReadTimeout: 10 * time.Second,
		WriteTimeout: 30 * time.Second, IdleTimeout: time.Minute,
		BaseContext: func(net.Listener) context.Context { return context.WithoutCancel(ctx) }}
	m.wg.Add(1)
	go func() {
		defer m.wg.Done()
		if err := m.srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			log.Error().Err(err).Str("component", "metrics").Msg("metrics server stopped")
		}
	}()
	log.Info().Str("component", "metrics").Str("addr", ln.Addr().String()).Msg("serving /metrics, /healthz and /readyz")
	return m, nil
}

// Addr returns the address the server listens on.
func (m *metricsServer) Addr() string { return m.ln.Addr().String() }

// SetReady makes /readyz run check; before, /readyz answers 503. nil
// makes it answer 503 again (stopping).
func (m *metricsServer) SetReady(check func(context.Context) error) {
	if m == nil {
		return
	}
	if check == nil {
		m.ready.Store(nil)
		return
	}
	m.ready.Store(&check)
}

func (m *metricsServer) serveReady(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	check := m.ready.Load()
	if check == nil {
		w.WriteHeader(http.StatusServiceUnavailable)
		fmt.Fprintln(w, "not ready: the roles are not connected to Kafka, S3 and the ledger")
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), readyTimeout)
	defer cancel()
	if err := (*check)(ctx); err != nil {
		w.WriteHeader(http.StatusServiceUnavailable)
		fmt.Fprintf(w, "not ready: %v\n", err)
		return
	}
	fmt.Fprintln(w, "ok")
}

// Close stops the server, letting requests in progress finish until ctx
// ends. The nil server does nothing.
func (m *metricsServer) Close(ctx context.Context) error {
	if m == nil {
		return nil
	}
	m.SetReady(nil)
	err := m.srv.Shutdown(ctx)
	m.wg.Wait()
	return err
}
