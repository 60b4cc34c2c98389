// Package gap holds what the write-gap benchmarks share: a paced
// synchronous JetStream publisher that measures the longest pause of
// acknowledged writes while a step runs, the stream leader, a call of the
// API and the min/median/max summary.
package gap

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/prober-dev/prober/app"
	"github.com/prober-dev/prober/natsraft"
)

// retryWait is the publisher's pause after "no responders" (nats.go's
// default is 250ms, which would hide every gap shorter than that).
const retryWait = 5 * time.Millisecond

// publishTimeout bounds one synchronous publish. A publish in flight at the
// moment a stream leader steps down can go unanswered (the old leader drops
// it); the gap then includes this timeout, as it would for any client.
const publishTimeout = 2 * time.Second

// Call sends method url and wants 200.
func Call(ctx context.Context, method, url string) error {
	_, err := Send(ctx, method, url, "")
	return err
}

// Send sends method url with body and wants a 2xx answer (201 for a new
// rollout); it returns the answer.
func Send(ctx context.Context, method, url, body string) ([]byte, error) {
	req, err := http.NewRequestWithContext(ctx, method, url, strings.NewReader(body))
	if err != nil {
		return nil, err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode/100 != 2 {
		return nil, fmt.Errorf("%s %s: %d %s", method, url, resp.StatusCode, b)
	}
	return b, nil
}

// Measure publishes synchronously through a node other than target while
// step runs, until writes have flowed for settle after step returned, and
// returns the longest time between two consecutive acknowledgements.
func Measure(ctx context.Context, c *natsraft.Embedded, target string, settle time.Duration, step func(context.Context) error) (time.Duration, error) {
	var via string
	for _, n := range c.Nodes() {
		if n.Name() != target && n.DC() == c.Node(target).DC() {
			via = n.ClientURL()
			break
		}
	}
	nc, err := nats.Connect(via, nats.UserInfo("app", "app"), nats.DontRandomize(), nats.MaxReconnects(-1))
	if err != nil {
		return 0, err
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		return 0, err
	}
	var (
		mu      sync.Mutex
		last    = time.Now()
		maxGap  time.Duration
		stepEnd time.Time
		acked   int
	)
	pubCtx, stopPub := context.WithCancel(ctx)
	defer stopPub()
	done := make(chan error, 1)
	// A short warm-up so the first gap is measured from a flowing stream.
	go func() {
		for pubCtx.Err() == nil {
			pctx, cancel := context.WithTimeout(pubCtx, publishTimeout)
			_, err := js.Publish(pctx, "demo.bench", []byte("x"),
				jetstream.WithRetryWait(retryWait), jetstream.WithRetryAttempts(200))
			cancel()
			now := time.Now()
			if err != nil {
				continue
			}
			mu.Lock()
			if g := now.Sub(last); g > maxGap {
				maxGap = g
			}
			last = now
			acked++
			if !stepEnd.IsZero() && now.Sub(stepEnd) > settle {
				mu.Unlock()
				done <- nil
				return
			}
			mu.Unlock()
			time.Sleep(5 * time.Millisecond) // pacing: ~200 msg/s, as in the design's measurements
		}
		done <- pubCtx.Err()
	}()
	if err := waitAcks(ctx, &mu, &acked, 50); err != nil {
		return 0, err
	}
	mu.Lock()
	maxGap = 0
	mu.Unlock()
	if err := step(ctx); err != nil {
		return 0, err
	}
	mu.Lock()
	stepEnd = time.Now()
	mu.Unlock()
	if err := <-done; err != nil {
		return 0, err
	}
	mu.Lock()
	defer mu.Unlock()
	return maxGap, nil
}

func waitAcks(ctx context.Context, mu *sync.Mutex, acked *int, n int) error {
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) && ctx.Err() == nil {
		mu.Lock()
		ok := *acked >= n
		mu.Unlock()
		if ok {
			return nil
		}
		time.Sleep(10 * time.Millisecond)
	}
	return errors.New("writes never started")
}

// StreamLeader returns the leader of stream demo.
func StreamLeader(ctx context.Context, c *natsraft.Embedded) (string, error) {
	nc, err := c.Dial(natsraft.AppAccount)
	if err != nil {
		return "", err
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		return "", err
	}
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		s, err := js.Stream(ctx, "demo")
		if err == nil {
			if info, err := s.Info(ctx); err == nil && info.Cluster != nil && info.Cluster.Leader != "" {
				return info.Cluster.Leader, nil
			}
		}
		time.Sleep(50 * time.Millisecond)
	}
	return "", errors.New("stream demo has no leader")
}

// Retry calls fn until it succeeds, every 200 ms for up to a minute (a
// cluster that has just started answers its first requests with errors),
// and returns fn's last error, prefixed with what, or ctx's.
func Retry(ctx context.Context, what string, fn func() error) error {
	deadline := time.Now().Add(time.Minute)
	for {
		err := fn()
		if err == nil {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s: %w", what, err)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(200 * time.Millisecond):
		}
	}
}

// Stats is "min / median / max s" of ds.
func Stats(ds []time.Duration) string {
	if len(ds) == 0 {
		return "-"
	}
	s := sorted(ds)
	return fmt.Sprintf("%.3f / %.3f / %.3f s", s[0].Seconds(), Median(s).Seconds(), s[len(s)-1].Seconds())
}

// Median of sorted durations.
func Median(sorted []time.Duration) time.Duration {
	n := len(sorted)
	if n%2 == 1 {
		return sorted[n/2]
	}
	return (sorted[n/2-1] + sorted[n/2]) / 2
}

// Ratio is the median of a over the median of b, as "12.3x"; "-" when
// either is empty or b's median is not positive.
func Ratio(a, b []time.Duration) string {
	if len(a) == 0 || len(b) == 0 {
		return "-"
	}
	mb := Median(sorted(b))
	if mb <= 0 {
		return "-"
	}
	return fmt.Sprintf("%.1fx", float64(Median(sorted(a)))/float64(mb))
}

// sorted returns a sorted copy of ds.
func sorted(ds []time.Duration) []time.Duration {
	s := slices.Clone(ds)
	slices.Sort(s)
	return s
}

// RunEmbedded runs the embedded default e until stop is called, and
// returns once it serves (or failed to start). stop ends it and waits.
func RunEmbedded(ctx context.Context, e *app.Embedded) (stop func(), err error) {
	appCtx, cancel := context.WithCancel(ctx)
	errc := make(chan error, 1)
	go func() { errc <- e.Run(appCtx) }()
	select {
	case <-e.Started():
		return func() { cancel(); <-errc }, nil
	case err := <-errc:
		cancel()
		return nil, err
	}
}

// JetStream connects to c as a user of the app account and returns the
// JetStream API over that connection, and a func that closes it.
func JetStream(c *natsraft.Embedded) (jetstream.JetStream, func(), error) {
	nc, err := c.Dial(natsraft.AppAccount)
	if err != nil {
		return nil, nil, err
	}
	js, err := jetstream.New(nc)
	if err != nil {
		nc.Close()
		return nil, nil, err
	}
	return js, nc.Close, nil
}
