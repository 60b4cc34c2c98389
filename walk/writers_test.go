package walk_test

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// writerInterval paces each writer: ~20 messages a second per stream.
const writerInterval = 50 * time.Millisecond

// ack is one acknowledged publish: the stream stored id at seq.
type ack struct {
	stream string
	seq    uint64
	id     string
}

// writers publish to their streams with a Msg-Id each, concurrently with
// the walk, and retry a publish with the same Msg-Id until it is
// acknowledged: JetStream's duplicate window makes the retry safe, so every
// id is stored once.
type writers struct {
	nc     *nats.Conn
	cancel context.CancelFunc
	wg     sync.WaitGroup

	mu       sync.Mutex
	acks     []ack
	retries  int
	dupAcks  int
	lastErrs map[string]string
}

// streamTarget is a stream and the subject a writer publishes to it on.
type streamTarget struct{ stream, subject string }

func startWriters(urls []string, targets []streamTarget) (*writers, error) {
	nc, err := nats.Connect(joinURLs(urls), nats.UserInfo("app", "app"), nats.MaxReconnects(-1),
		nats.ReconnectWait(100*time.Millisecond), nats.Timeout(2*time.Second), nats.RetryOnFailedConnect(true))
	if err != nil {
		return nil, err
	}
	js, err := jetstream.New(nc)
	if err != nil {
		nc.Close()
		return nil, err
	}
	ctx, cancel := context.WithCancel(context.Background())
	w := &writers{nc: nc, cancel: cancel, lastErrs: map[string]string{}}
	for i, tg := range targets {
		w.wg.Add(1)
		go func() {
			defer w.wg.Done()
			w.run(ctx, js, i, tg)
		}()
	}
	return w, nil
}

func joinURLs(urls []string) string {
	out := ""
	for i, u := range urls {
		if i > 0 {
			out += ","
		}
		out += u
	}
	return out
}

func (w *writers) run(ctx context.Context, js jetstream.JetStream, n int, tg streamTarget) {
	tick := time.NewTicker(writerInterval)
	defer tick.Stop()
	for k := 0; ; k++ {
		id := fmt.Sprintf("w%d-%d", n, k)
		for attempt := 0; ; attempt++ {
			select {
			case <-ctx.Done():
				return
			case <-tick.C:
			}
			pctx, cancel := context.WithTimeout(ctx, 3*time.Second)
			pa, err := js.Publish(pctx, tg.subject, []byte(id), jetstream.WithMsgID(id), jetstream.WithExpectStream(tg.stream))
			cancel()
			if err != nil {
				if !errors.Is(err, context.Canceled) {
					w.mu.Lock()
					w.retries++
					w.lastErrs[tg.stream] = err.Error()
					w.mu.Unlock()
				}
				continue
			}
			w.mu.Lock()
			w.acks = append(w.acks, ack{stream: pa.Stream, seq: pa.Sequence, id: id})
			if pa.Duplicate {
				w.dupAcks++
			}
			w.mu.Unlock()
			break
		}
	}
}

// stop ends every writer and returns what was acknowledged.
func (w *writers) stop() []ack {
	w.cancel()
	w.wg.Wait()
	w.nc.Close()
	w.mu.Lock()
	defer w.mu.Unlock()
	return append([]ack(nil), w.acks...)
}

func (w *writers) counts() (acks, retries, dups int) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return len(w.acks), w.retries, w.dupAcks
}

// checkAcks reads every stream of acks back by sequence and returns what is
// wrong: an acknowledged id missing or at another sequence, or an id stored
// twice. It also returns how many messages it read.
func checkAcks(ctx context.Context, urls []string, acks []ack) (problems []string, read int, err error) {
	nc, err := nats.Connect(joinURLs(urls), nats.UserInfo("app", "app"), nats.MaxReconnects(-1), nats.Timeout(2*time.Second))
	if err != nil {
		return nil, 0, err
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		return nil, 0, err
	}
	byStream := map[string][]ack{}
	for _, a := range acks {
		byStream[a.stream] = append(byStream[a.stream], a)
	}
	for name, list := range byStream {
		var st jetstream.Stream
		var info *jetstream.StreamInfo
		err := retry(ctx, func(c context.Context) error {
			var err error
			if st, err = js.Stream(c, name); err != nil {
				return err
			}
			info, err = st.Info(c)
			return err
		})
		if err != nil {
			return nil, read, fmt.Errorf("stream %s: %w", name, err)
		}
		stored := map[uint64]string{}
		seen := map[string]uint64{}
		for seq := info.State.FirstSeq; seq <= info.State.LastSeq && info.State.Msgs > 0; seq++ {
			var m *jetstream.RawStreamMsg
			err := retry(ctx, func(c context.Context) error {
				var err error
				m, err = st.GetMsg(c, seq)
				if errors.Is(err, jetstream.ErrMsgNotFound) {
					m, err = nil, nil
				}
				return err
			})
			if err != nil {
				return nil, read, fmt.Errorf("stream %s seq %d: %w", name, seq, err)
			}
			if m == nil {
				continue
			}
			read++
			id := m.Header.Get(jetstream.MsgIDHeader)
			stored[seq] = id
			if prev, dup := seen[id]; dup {
				problems = append(problems, fmt.Sprintf("stream %s: Msg-Id %s stored twice (seq %d and %d)", name, id, prev, seq))
			}
			seen[id] = seq
		}
		for _, a := range list {
			if got := stored[a.seq]; got != a.id {
				problems = append(problems, fmt.Sprintf("stream %s: acknowledged %s at seq %d, stored there: %q (stream %d..%d, %d msgs)",
					name, a.id, a.seq, got, info.State.FirstSeq, info.State.LastSeq, info.State.Msgs))
			}
		}
	}
	return problems, read, nil
}

// retry calls f with a short deadline until it succeeds or ctx ends.
func retry(ctx context.Context, f func(context.Context) error) error {
	for {
		c, cancel := context.WithTimeout(ctx, 3*time.Second)
		err := f(c)
		cancel()
		if err == nil {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("%w (last: %v)", ctx.Err(), err)
		case <-time.After(200 * time.Millisecond):
		}
	}
}
