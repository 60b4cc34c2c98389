// Command exit measures how long a pod takes to come back from maintenance
// on the embedded default: PUT /pods/<pod>?wait=60s, then DELETE
// /pods/<pod>?wait=60s, reps times, and for each DELETE how long until its
// answer (200 once the pod is Active: unfenced, resumed, caught up,
// leaderships given back) and until GET /readyz?pod=<pod> first answers 200.
// The phases the pod goes through are printed with their times, so that
// where the time goes can be seen. It prints min/median/max of both, for
// each hold (how long the pod stays in maintenance) side by side: the
// node, its JetStream resumed, waits for each of its groups' leaders to
// send their next Raft heartbeat (NATS sends one a second), and right
// after the entry's hand-off those leaders have just been elected.
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/rs/zerolog"

	"github.com/prober-dev/prober/app"
	"github.com/prober-dev/prober/bench/internal/gap"
	"github.com/prober-dev/prober/maintenance"
)

func main() {
	reps := flag.Int("reps", 8, "maintenances measured per hold")
	pod := flag.String("pod", "", "the pod to take in and out of maintenance (default: the last node)")
	verbose := flag.Bool("v", false, "log the embedded default's steps on stderr")
	holds := []time.Duration{0, 500 * time.Millisecond}
	flag.Func("hold", "how long the pod stays in maintenance before the DELETE: Go durations, comma-separated (default 0s,500ms)", func(v string) error {
		holds = holds[:0]
		for f := range strings.SplitSeq(v, ",") {
			d, err := time.ParseDuration(strings.TrimSpace(f))
			if err != nil || d < 0 {
				return fmt.Errorf("bad hold %q", f)
			}
			holds = append(holds, d)
		}
		return nil
	})
	flag.Parse()
	log := zerolog.Nop()
	if *verbose {
		zerolog.TimeFieldFormat = time.RFC3339Nano
		log = zerolog.New(zerolog.ConsoleWriter{Out: os.Stderr, TimeFormat: "15:04:05.000"}).With().Timestamp().Logger()
	}
	if err := run(*reps, *pod, holds, log, os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "exit:", err)
		os.Exit(1)
	}
}

// poll is how often the phase and readiness are looked at during a DELETE.
const poll = 10 * time.Millisecond

func run(reps int, pod string, holds []time.Duration, log zerolog.Logger, out io.Writer) error {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Minute)
	defer cancel()
	dir, err := os.MkdirTemp("", "exit-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	embedded := &app.Embedded{Listen: "127.0.0.1:0", DataDir: dir, Logger: log}
	stop, err := gap.RunEmbedded(ctx, embedded)
	if err != nil {
		return err
	}
	defer stop()
	if pod == "" {
		nodes := embedded.Cluster().Nodes()
		pod = nodes[len(nodes)-1].Name()
	}
	base := "http://" + embedded.Addr()
	type row struct{ answered, ready []time.Duration }
	rows := make([]row, len(holds))
	for h, hold := range holds {
		fmt.Fprintf(out, "DELETE /pods/%s?wait=60s on the embedded default %s after PUT …?wait=60s, %d runs\n", pod, hold, reps)
		a, r, err := measure(ctx, base, pod, hold, reps, out)
		if err != nil {
			return fmt.Errorf("hold %s: %w", hold, err)
		}
		rows[h] = row{a, r}
	}
	fmt.Fprintln(out)
	fmt.Fprintf(out, "%-8s %-40s %-28s %s\n", "hold", "measure", "min / median / max", "target")
	for h, hold := range holds {
		name := strconv.FormatFloat(hold.Seconds(), 'f', -1, 64) + "s"
		fmt.Fprintf(out, "%-8s %-40s %-28s %s\n", name, "DELETE → answered 200 (Active)", gap.Stats(rows[h].answered), "≤ 0.5 s")
		fmt.Fprintf(out, "%-8s %-40s %-28s %s\n", name, "DELETE → /readyz?pod= 200", gap.Stats(rows[h].ready), "≤ 0.5 s")
	}
	return nil
}

// measure takes the pod in and out reps times, holding it hold in
// maintenance, and returns how long each DELETE took to be answered and
// to make the pod ready.
func measure(ctx context.Context, base, pod string, hold time.Duration, reps int, out io.Writer) (answered, ready []time.Duration, err error) {
	for i := range reps {
		if err := waitReady(ctx, base, pod); err != nil {
			return nil, nil, fmt.Errorf("run %d: %w", i+1, err)
		}
		if err := gap.Call(ctx, http.MethodPut, base+"/pods/"+pod+"?wait=60s"); err != nil {
			return nil, nil, fmt.Errorf("run %d: %w", i+1, err)
		}
		sleep(ctx, hold)
		a, r, phases, err := exit(ctx, base, pod)
		if err != nil {
			return nil, nil, fmt.Errorf("run %d: %w", i+1, err)
		}
		fmt.Fprintf(out, "  run %d: answered %.3fs, ready %.3fs; %s\n", i+1, a.Seconds(), r.Seconds(), phases)
		answered, ready = append(answered, a), append(ready, r)
	}
	return answered, ready, nil
}

// exit sends the DELETE and returns how long until its answer and until
// the pod's readiness first answered 200, and the phases seen on the way.
func exit(ctx context.Context, base, pod string) (answered, ready time.Duration, phases string, err error) {
	start := time.Now()
	pctx, stop := context.WithCancel(ctx)
	var wg sync.WaitGroup
	var seen []string
	wg.Go(func() {
		last := ""
		for pctx.Err() == nil {
			if p, err := phase(pctx, base, pod); err == nil && p != last {
				last = p
				seen = append(seen, fmt.Sprintf("%s %.3fs", p, time.Since(start).Seconds()))
			}
			sleep(pctx, poll)
		}
	})
	readyc := make(chan time.Duration, 1)
	rctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	go func() {
		for rctx.Err() == nil {
			if readyz(rctx, base, pod) {
				readyc <- time.Since(start)
				return
			}
			sleep(rctx, poll)
		}
		close(readyc)
	}()
	err = gap.Call(ctx, http.MethodDelete, base+"/pods/"+pod+"?wait=60s")
	answered = time.Since(start)
	r, ok := <-readyc
	stop()
	wg.Wait()
	if err == nil && !ok {
		err = fmt.Errorf("%s not ready within a minute", pod)
	}
	return answered, r, strings.Join(seen, ", "), err
}

func phase(ctx context.Context, base, pod string) (string, error) {
	b, err := gap.Send(ctx, http.MethodGet, base+"/pods/"+pod, "")
	if err != nil {
		return "", err
	}
	var pv maintenance.PodView
	if err := json.Unmarshal(b, &pv); err != nil {
		return "", err
	}
	return string(pv.Phase), nil
}

func readyz(ctx context.Context, base, pod string) bool {
	_, err := gap.Send(ctx, http.MethodGet, base+"/readyz?pod="+pod, "")
	return err == nil
}

// waitReady waits up to a minute for the pod's readiness.
func waitReady(ctx context.Context, base, pod string) error {
	ctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	for !readyz(ctx, base, pod) {
		if ctx.Err() != nil {
			return fmt.Errorf("%s not ready within a minute", pod)
		}
		sleep(ctx, poll)
	}
	return nil
}

func sleep(ctx context.Context, d time.Duration) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
	case <-t.C:
	}
}
