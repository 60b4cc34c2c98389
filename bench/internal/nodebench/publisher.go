package nodebench

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	"github.com/prober-dev/prober/tools/kubenode"
	"github.com/prober-dev/prober/tools/kubenode/podclient/events"
)

// Pod is the name of the client pod the publisher runs in (and its label
// app=<Pod>).
const Pod = "publisher"

// AppUser and AppPassword are deploy/'s NATS credentials for applications.
const (
	AppUser     = "app"
	AppPassword = "change-me-app"
)

// waitTimeout bounds the wait for one event of the publisher.
const waitTimeout = 2 * time.Minute

// ClientPod creates the client pod from the podclient image and waits
// until it is Ready.
func ClientPod(ctx context.Context, cs kubernetes.Interface, image string) error {
	_, err := cs.CoreV1().Pods(Namespace).Create(ctx, &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: Pod, Labels: map[string]string{"app": Pod}},
		Spec: corev1.PodSpec{
			TerminationGracePeriodSeconds: new(int64),
			Containers: []corev1.Container{{
				Name: "client", Image: image, ImagePullPolicy: corev1.PullNever,
			}},
		},
	}, metav1.CreateOptions{})
	if err != nil {
		return err
	}
	wctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	return kubenode.WaitPodsReady(wctx, cs, Namespace, "app="+Pod, 1)
}

// Kubectl builds kubectl commands against the node
// (*kubenode.WithDeploy does).
type Kubectl interface {
	KubectlCmd(ctx context.Context, args ...string) *exec.Cmd
}

// Options are one publisher run's.
type Options struct {
	// Servers are the NATS URLs the publisher connects to.
	Servers []string
	// Subject is where it publishes, ~200 messages a second.
	Subject string
	// Timeout bounds one publish (podclient's -timeout).
	Timeout time.Duration
}

// Publisher is one `kubectl exec … podclient publish` in the client pod.
type Publisher struct {
	stopSubject string
	events      chan events.Event
	cmd         *exec.Cmd

	mu  sync.Mutex
	all []events.Event // every event read so far, the summary included
}

// Start runs the publisher, as deploy/'s application user, and returns
// once it publishes. Its standard error goes to this process's.
func Start(k Kubectl, o Options) (*Publisher, error) {
	p := &Publisher{stopSubject: "ctl.stop." + strconv.FormatInt(time.Now().UnixNano(), 36)}
	p.cmd = k.KubectlCmd(context.Background(), "-n", Namespace, "exec", Pod, "--", "/podclient", "publish",
		"-servers", strings.Join(o.Servers, ","), "-user", AppUser, "-password", AppPassword,
		"-subject", o.Subject, "-stop-subject", p.stopSubject, "-rate", "200", "-timeout", o.Timeout.String())
	if err := p.start(); err != nil {
		return nil, err
	}
	if _, err := p.Wait("publishing"); err != nil {
		p.Kill()
		return nil, err
	}
	return p, nil
}

// start starts p.cmd and reads its event lines into p.events, which is
// closed when the command has ended; a line that is not an event is
// skipped.
func (p *Publisher) start() error {
	p.events = make(chan events.Event, 1024)
	out, err := p.cmd.StdoutPipe()
	if err != nil {
		return err
	}
	p.cmd.Stderr = os.Stderr
	if err := p.cmd.Start(); err != nil {
		return err
	}
	go func() {
		_ = events.Read(out, func(e events.Event) {
			p.mu.Lock()
			p.all = append(p.all, e)
			p.mu.Unlock()
			p.events <- e
		})
		_ = p.cmd.Wait()
		close(p.events)
	}()
	return nil
}

// Wait returns the next event of the kind, skipping the others.
func (p *Publisher) Wait(kind string) (events.Event, error) {
	timeout := time.After(waitTimeout)
	for {
		select {
		case e, ok := <-p.events:
			if !ok {
				return events.Event{}, fmt.Errorf("the publisher ended before %q", kind)
			}
			if e.Event == kind {
				return e, nil
			}
		case <-timeout:
			return events.Event{}, fmt.Errorf("no %q from the publisher", kind)
		}
	}
}

// Stop tells the publisher, through nc, to stop and returns its summary.
func (p *Publisher) Stop(nc *nats.Conn) (events.Event, error) {
	if err := nc.Publish(p.stopSubject, nil); err != nil {
		return events.Event{}, err
	}
	if err := nc.Flush(); err != nil {
		return events.Event{}, err
	}
	return p.Wait("summary")
}

// Events returns every event the publisher printed so far, in order.
func (p *Publisher) Events() []events.Event {
	p.mu.Lock()
	defer p.mu.Unlock()
	return slices.Clone(p.all)
}

// Kill ends the publisher's kubectl at once.
func (p *Publisher) Kill() { _ = p.cmd.Process.Kill() }

// Stream reads a stream the publisher wrote to, to find its acknowledged
// messages there (each message's data is its id in decimal).
type Stream struct {
	JS   nats.JetStreamContext
	Name string
	// Retry, when set, wraps every read of the stream (right after a step
	// the stream may be between leaders for a while); unset, each read is
	// tried once.
	Retry func(func() error) error
	// Strict makes a message that is not an id an error; otherwise it is
	// skipped.
	Strict bool
}

// Lost counts the acknowledged ids of the publisher's summary that are
// missing from the stream.
func (s Stream) Lost(sum events.Event) (int, error) {
	ids, err := events.ParseRanges(sum.AckedIDs)
	if err != nil {
		return 0, err
	}
	try := s.Retry
	if try == nil {
		try = func(fn func() error) error { return fn() }
	}
	var info *nats.StreamInfo
	if err := try(func() (err error) { info, err = s.JS.StreamInfo(s.Name); return err }); err != nil {
		return 0, err
	}
	stored := map[int]bool{}
	for seq := info.State.FirstSeq; seq <= info.State.LastSeq && info.State.Msgs > 0; seq++ {
		var m *nats.RawStreamMsg
		if err := try(func() (err error) { m, err = s.JS.GetMsg(s.Name, seq); return err }); err != nil {
			return 0, fmt.Errorf("message %d: %w", seq, err)
		}
		id, err := strconv.Atoi(string(m.Data))
		if err != nil {
			if s.Strict {
				return 0, err
			}
			continue
		}
		stored[id] = true
	}
	lost := 0
	for _, id := range ids {
		if !stored[id] {
			lost++
		}
	}
	return lost, nil
}
