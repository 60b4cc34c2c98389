package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"time"

	"github.com/prober-dev/prober/bench/internal/synth"
	"github.com/prober-dev/prober/natsraft"
)

// The synthetic cluster: the monitoring documents of a healthy 3-node
// cluster of streams × (1 + consumers) R3 Raft groups (package synth).

var synthNodes = synth.Nodes(3)

// serveSynthetic serves the synthetic cluster on loopback, announces its
// endpoints on out and serves until in closes.
func serveSynthetic(ctx context.Context, streams, consumers int, out io.Writer, in io.Reader) error {
	start := time.Now()
	var eps []natsraft.Endpoint
	var servers []*http.Server
	defer func() {
		for _, s := range servers {
			_ = s.Close()
		}
	}()
	for i, name := range synthNodes {
		docs, err := synth.NewHandler(synthNodes, i, streams, consumers)
		if err != nil {
			return err
		}
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return err
		}
		srv := &http.Server{Handler: docs, ReadHeaderTimeout: 10 * time.Second}
		servers = append(servers, srv)
		go func() { _ = srv.Serve(ln) }()
		eps = append(eps, natsraft.Endpoint{Name: name, DC: "dc1", MonitorURL: "http://" + ln.Addr().String()})
	}
	fmt.Fprintf(out, "synthetic documents of %d groups rendered in %.1fs\n", streams*(1+consumers)+1, time.Since(start).Seconds())
	b, err := json.Marshal(eps)
	if err != nil {
		return err
	}
	fmt.Fprintln(out, readyLine+string(b))
	_, _ = io.Copy(io.Discard, in)
	return ctx.Err()
}
