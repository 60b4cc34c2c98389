// Command evacuate measures how long the prober takes to move a stream of
// one replica off a node before its maintenance, and back after it, for a
// stream of a given size (100 MB by default) on the embedded 3-node
// cluster: raise to two replicas, wait until the new one is current, move
// the leader, lower to one (natsraft.HandOff.Evacuate and Restore). It
// prints min/median/max over the repetitions and the rate.
package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"sort"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/rs/zerolog"

	"github.com/prober-dev/prober/bench/internal/gap"
	"github.com/prober-dev/prober/natsraft"
)

func main() {
	size := flag.Int("mb", 100, "stream size in MB")
	msgSize := flag.Int("msg", 4096, "message size in bytes")
	reps := flag.Int("reps", 3, "repetitions (each moves the stream off and back)")
	flag.Parse()
	if err := run(*size, *msgSize, *reps, os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "evacuate:", err)
		os.Exit(1)
	}
}

func run(sizeMB, msgSize, reps int, out io.Writer) error {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Minute)
	defer cancel()
	dir, err := os.MkdirTemp("", "evacuate-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	e, err := natsraft.StartEmbedded(ctx, natsraft.EmbeddedOptions{DataDir: dir, Logger: zerolog.Nop()})
	if err != nil {
		return err
	}
	defer e.Close()
	c := natsraft.NewCollector(natsraft.CollectorOptions{Endpoints: e.Endpoints(), Logger: zerolog.Nop()})
	h := &natsraft.HandOff{Views: c, Dial: e.Dial, Logger: zerolog.Nop()}

	js, closeJS, err := gap.JetStream(e)
	if err != nil {
		return err
	}
	defer closeJS()
	if _, err := js.CreateStream(ctx, jetstream.StreamConfig{Name: "big", Subjects: []string{"big.>"}, Replicas: 1,
		MaxBytes: int64(sizeMB+16) << 20}); err != nil {
		return err
	}
	n := sizeMB << 20 / msgSize
	payload := make([]byte, msgSize)
	start := time.Now()
	for i := 0; i < n; {
		batch := min(256, n-i)
		futures := make([]jetstream.PubAckFuture, 0, batch)
		for range batch {
			f, err := js.PublishAsync("big.x", payload)
			if err != nil {
				return err
			}
			futures = append(futures, f)
		}
		for _, f := range futures {
			select {
			case <-f.Ok():
			case err := <-f.Err():
				return err
			case <-ctx.Done():
				return ctx.Err()
			}
		}
		i += batch
	}
	st, err := js.Stream(ctx, "big")
	if err != nil {
		return err
	}
	bytes := st.CachedInfo().State.Bytes
	fmt.Fprintf(out, "stream big: %d messages of %d B, %.1f MB stored, written in %.1fs\n",
		st.CachedInfo().State.Msgs, msgSize, float64(bytes)/(1<<20), time.Since(start).Seconds())

	var off, back []time.Duration
	for r := 0; r < reps; r++ {
		st, err := js.Stream(ctx, "big")
		if err != nil {
			return err
		}
		owner := st.CachedInfo().Cluster.Leader
		t0 := time.Now()
		moved, err := h.Evacuate(ctx, owner, nil, nil)
		if err != nil {
			return fmt.Errorf("evacuate %s: %w", owner, err)
		}
		off = append(off, time.Since(t0))
		t0 = time.Now()
		if _, err := h.Restore(ctx, owner, moved); err != nil {
			return fmt.Errorf("restore onto %s: %w", owner, err)
		}
		back = append(back, time.Since(t0))
	}
	mb := float64(bytes) / (1 << 20)
	fmt.Fprintf(out, "%-22s %s\n", "move off (evacuate)", stats(off, mb))
	fmt.Fprintf(out, "%-22s %s\n", "move back (restore)", stats(back, mb))
	return nil
}

// stats prints min/median/max and the median rate for mb megabytes.
func stats(ds []time.Duration, mb float64) string {
	s := append([]time.Duration(nil), ds...)
	sort.Slice(s, func(i, j int) bool { return s[i] < s[j] })
	med := s[len(s)/2]
	return fmt.Sprintf("%.2f / %.2f / %.2f s (min/median/max), %.0f MB/s at the median",
		s[0].Seconds(), med.Seconds(), s[len(s)-1].Seconds(), mb/med.Seconds())
}
