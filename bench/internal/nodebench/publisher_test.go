package nodebench

import (
	"context"
	"errors"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/prober-dev/prober/tools/kubenode/podclient/events"
)

// fakeKubectl runs a shell script in place of kubectl and keeps the
// arguments it was given.
type fakeKubectl struct {
	script string
	args   []string
}

func (f *fakeKubectl) KubectlCmd(ctx context.Context, args ...string) *exec.Cmd {
	f.args = args
	return exec.CommandContext(ctx, "sh", "-c", f.script)
}

// jetStream runs a single NATS server with JetStream and connects to it.
func jetStream(t *testing.T) (*nats.Conn, nats.JetStreamContext) {
	t.Helper()
	s, err := server.NewServer(&server.Options{Host: "127.0.0.1", Port: -1, JetStream: true, StoreDir: t.TempDir(), NoLog: true, NoSigs: true})
	require.NoError(t, err)
	go s.Start()
	t.Cleanup(s.Shutdown)
	require.True(t, s.ReadyForConnections(10*time.Second))
	nc, err := nats.Connect(s.ClientURL())
	require.NoError(t, err)
	t.Cleanup(nc.Close)
	js, err := nc.JetStream()
	require.NoError(t, err)
	return nc, js
}

func TestPublisherStartWaitStop(t *testing.T) {
	k := &fakeKubectl{script: `
echo '{"event":"connected","server":"nats-1"}'
echo 'kubectl: not an event'
echo '{"event":"publishing","server":"nats-1"}'
echo '{"event":"gap","gap":0.25}'
echo '{"event":"summary","acked":3,"maxGap":0.25,"ackedIDs":["1-3"]}'`}
	p, err := Start(k, Options{Servers: []string{"nats://nats-0.nats-headless:4222", "nats://nats-1.nats-headless:4222"}, Subject: "gap.x", Timeout: 2 * time.Second})
	require.NoError(t, err)
	defer p.Kill()

	require.Len(t, k.args, 21)
	assert.Equal(t, []string{"-n", Namespace, "exec", Pod, "--", "/podclient", "publish",
		"-servers", "nats://nats-0.nats-headless:4222,nats://nats-1.nats-headless:4222", "-user", AppUser, "-password", AppPassword,
		"-subject", "gap.x", "-stop-subject", p.stopSubject, "-rate", "200", "-timeout", "2s"}, k.args)
	assert.True(t, strings.HasPrefix(p.stopSubject, "ctl.stop."), p.stopSubject)

	nc, _ := jetStream(t)
	stopped, err := nc.SubscribeSync(p.stopSubject)
	require.NoError(t, err)
	sum, err := p.Stop(nc)
	require.NoError(t, err)
	assert.Equal(t, events.Event{Event: "summary", Acked: 3, MaxGap: 0.25, AckedIDs: []string{"1-3"}}, sum, "the gap event before it is skipped")
	_, err = stopped.NextMsg(5 * time.Second)
	assert.NoError(t, err, "the stop was published on the publisher's stop subject")

	_, err = p.Wait("summary")
	assert.EqualError(t, err, `the publisher ended before "summary"`)
}

func TestPublisherEndsBeforePublishing(t *testing.T) {
	k := &fakeKubectl{script: `echo '{"event":"connected"}'; echo 'nats: no servers available' >&2; exit 1`}
	_, err := Start(k, Options{Subject: "roll.x", Timeout: 5 * time.Second})
	require.EqualError(t, err, `the publisher ended before "publishing"`)
	assert.Equal(t, "5s", k.args[len(k.args)-1])
}

func TestStreamLost(t *testing.T) {
	_, js := jetStream(t)
	_, err := js.AddStream(&nats.StreamConfig{Name: "T", Subjects: []string{"t.>"}})
	require.NoError(t, err)
	sum := events.Event{Event: "summary", AckedIDs: []string{"1-2", "4-6"}}

	lost, err := Stream{JS: js, Name: "T"}.Lost(sum)
	require.NoError(t, err)
	assert.Equal(t, 5, lost, "an empty stream lost every acknowledged id")

	for _, data := range []string{"1", "2", "3", "x", "5", "5"} {
		_, err := js.Publish("t.x", []byte(data))
		require.NoError(t, err)
	}
	lost, err = Stream{JS: js, Name: "T"}.Lost(sum)
	require.NoError(t, err)
	assert.Equal(t, 2, lost, "4 and 6 are missing; 3 was not acknowledged, x is skipped, 5 counts once")

	_, err = Stream{JS: js, Name: "T", Strict: true}.Lost(sum)
	assert.Error(t, err, "strict: a message that is not an id")

	calls := 0
	retry := func(fn func() error) error { calls++; return fn() }
	lost, err = Stream{JS: js, Name: "T", Retry: retry}.Lost(sum)
	require.NoError(t, err)
	assert.Equal(t, 2, lost)
	assert.Equal(t, 1+6, calls, "the stream's info and each of its messages go through Retry")

	failing := func(func() error) error { return errors.New("no leader") }
	_, err = Stream{JS: js, Name: "T", Retry: failing}.Lost(sum)
	assert.EqualError(t, err, "no leader")

	_, err = Stream{JS: js, Name: "T"}.Lost(events.Event{AckedIDs: []string{"3-1"}})
	assert.Error(t, err, "a descending range")
}
