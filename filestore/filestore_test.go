package filestore

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prober-dev/prober/maintenance"
	"github.com/prober-dev/prober/maintenance/storetest"
	"github.com/rs/zerolog"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"golang.org/x/sys/unix"
)

// t0 is when the entries of sampleDoc start.
var t0 = time.Date(2025, 3, 1, 12, 0, 0, 0, time.UTC)

// sampleDoc is a document with every kind of key and field.
func sampleDoc() *maintenance.Document {
	expires := t0.Add(time.Hour)
	d := maintenance.NewDocument()
	d.ResourceVersion = "7"
	d.Pods["nats-0"] = maintenance.Entry{Reason: "kernel upgrade", RequestedBy: "ops", Since: t0, ExpiresAt: &expires, Force: true}
	d.Pods["nats-1"] = maintenance.Entry{Since: t0}
	d.DCs["east"] = maintenance.Entry{Reason: "rack move", Since: t0.Add(time.Minute)}
	d.Status["nats-0"] = maintenance.Status{Phase: maintenance.PhaseInMaintenance, Message: "fenced", ObservedAt: t0.Add(2 * time.Second), PhaseSince: t0.Add(time.Second)}
	d.Status["nats-2"] = maintenance.Status{Phase: maintenance.PhaseFailed, Message: "hand off: timeout", ObservedAt: t0, PhaseSince: t0}
	return d
}

// fsOpen opens a Store for a test and closes it at the end.
func fsOpen(tb testing.TB, path string, poll time.Duration) *Store {
	tb.Helper()
	s, err := Open(path, Options{PollInterval: poll, Logger: zerolog.Nop()})
	require.NoError(tb, err)
	tb.Cleanup(func() { assert.NoError(tb, s.Close()) })
	return s
}

// TestFileStoreContract runs the Store contract on files, each case on a
// file of its own.
func TestFileStoreContract(t *testing.T) {
	storetest.Run(t, func(t *testing.T) func() maintenance.Store {
		path := filepath.Join(t.TempDir(), "maintenance.json")
		return func() maintenance.Store { return fsOpen(t, path, 10*time.Millisecond) }
	})
}

func TestFileStoreCreateAndRoundTrip(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "nested", "dir", "maintenance.json")
	s := fsOpen(t, path, 0)

	b, err := os.ReadFile(path)
	require.NoError(t, err)
	assert.JSONEq(t, `{"resourceVersion":"1","data":{}}`, string(b))
	d, err := s.Get(ctx)
	require.NoError(t, err)
	assert.Equal(t, "1", d.ResourceVersion)
	assert.Empty(t, d.Pods)

	want := sampleDoc()
	got, err := s.Update(ctx, func(d *maintenance.Document) error {
		*d = *sampleDoc()
		return nil
	})
	require.NoError(t, err)
	want.ResourceVersion = "2"
	assert.Equal(t, want, got)

	got, err = s.Get(ctx)
	require.NoError(t, err)
	assert.Equal(t, want, got)

	// The file holds the same key/value form as the ConfigMap.
	b, err = os.ReadFile(path)
	require.NoError(t, err)
	wantData, err := want.Data()
	require.NoError(t, err)
	var onDisk struct {
		ResourceVersion string            `json:"resourceVersion"`
		Data            map[string]string `json:"data"`
	}
	require.NoError(t, json.Unmarshal(b, &onDisk))
	assert.Equal(t, "2", onDisk.ResourceVersion)
	assert.Equal(t, wantData, onDisk.Data)

	// No temporary file is left behind.
	names, err := os.ReadDir(filepath.Dir(path))
	require.NoError(t, err)
	var files []string
	for _, n := range names {
		files = append(files, n.Name())
	}
	assert.ElementsMatch(t, []string{"maintenance.json", "maintenance.json.lock"}, files)

	// Another store on the same file, as after a restart, reads the same.
	other := fsOpen(t, path, 0)
	got, err = other.Get(ctx)
	require.NoError(t, err)
	assert.Equal(t, want, got)
}

func TestFileStoreUpdateWritesOnlyChanges(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "m.json")
	s := fsOpen(t, path, 0)
	_, err := s.Update(ctx, func(d *maintenance.Document) error {
		d.Pods["nats-0"] = maintenance.Entry{Reason: "r", Since: t0}
		return nil
	})
	require.NoError(t, err)
	before, err := os.Stat(path)
	require.NoError(t, err)
	beforeBytes, err := os.ReadFile(path)
	require.NoError(t, err)

	errBoom := errors.New("boom")
	tests := []struct {
		name    string
		fn      func(*maintenance.Document) error
		wantErr error
	}{
		{"no change", func(*maintenance.Document) error { return nil }, nil},
		{"same value written again", func(d *maintenance.Document) error {
			d.Pods["nats-0"] = maintenance.Entry{Reason: "r", Since: t0}
			return nil
		}, nil},
		{"fn error after a change", func(d *maintenance.Document) error {
			d.Pods["nats-1"] = maintenance.Entry{}
			return errBoom
		}, errBoom},
		{"resourceVersion is not fn's to change", func(d *maintenance.Document) error {
			d.ResourceVersion = "100"
			return nil
		}, nil},
		{"invalid name", func(d *maintenance.Document) error {
			d.Pods["a/b"] = maintenance.Entry{}
			return nil
		}, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d, err := s.Update(ctx, tt.fn)
			switch {
			case tt.wantErr != nil:
				require.ErrorIs(t, err, tt.wantErr)
				assert.Same(t, tt.wantErr, err, "returned as is")
				assert.Nil(t, d)
			case tt.name == "invalid name":
				require.Error(t, err)
				assert.Equal(t, maintenance.EInvalid, maintenance.ErrorCode(err))
			default:
				require.NoError(t, err)
				assert.Equal(t, "2", d.ResourceVersion)
				assert.Contains(t, d.Pods, "nats-0")
			}
			after, err := os.Stat(path)
			require.NoError(t, err)
			assert.True(t, os.SameFile(before, after), "file not replaced")
			afterBytes, err := os.ReadFile(path)
			require.NoError(t, err)
			assert.Equal(t, string(beforeBytes), string(afterBytes))
		})
	}
}

func TestFileStoreConcurrentUpdates(t *testing.T) {
	const goroutines, increments = 50, 20
	ctx := context.Background()
	s := fsOpen(t, filepath.Join(t.TempDir(), "m.json"), 0)

	start := time.Now()
	var wg sync.WaitGroup
	errs := make(chan error, goroutines)
	for g := range goroutines {
		wg.Go(func() {
			own := fmt.Sprintf("pod-%d", g)
			for range increments {
				_, err := s.Update(ctx, func(d *maintenance.Document) error {
					if err := storetest.Increment(d.Pods, own); err != nil {
						return err
					}
					return storetest.Increment(d.DCs, "shared")
				})
				if err != nil {
					errs <- err
					return
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		require.NoError(t, err)
	}
	t.Logf("%d updates in %s (%s each)", goroutines*increments, time.Since(start),
		time.Since(start)/(goroutines*increments))

	d, err := s.Get(ctx)
	require.NoError(t, err)
	require.Len(t, d.Pods, goroutines)
	for name, e := range d.Pods {
		assert.Equal(t, strconv.Itoa(increments), e.Reason, name)
	}
	assert.Equal(t, strconv.Itoa(goroutines*increments), d.DCs["shared"].Reason, "shared counter")
	assert.Equal(t, strconv.Itoa(1+goroutines*increments), d.ResourceVersion, "one write per update")
}

// TestFileStoreTwoStoresOnePath runs two stores on one file, as two
// processes would, each with concurrent writers of its own.
func TestFileStoreTwoStoresOnePath(t *testing.T) {
	const perStore, increments = 8, 25
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "m.json")
	stores := []*Store{fsOpen(t, path, 10*time.Millisecond), fsOpen(t, path, 10*time.Millisecond)}

	var wg sync.WaitGroup
	errs := make(chan error, 2*perStore)
	for i, s := range stores {
		for g := range perStore {
			wg.Go(func() {
				own := fmt.Sprintf("s%d-g%d", i, g)
				for range increments {
					if _, err := s.Update(ctx, func(d *maintenance.Document) error {
						if err := storetest.Increment(d.Pods, own); err != nil {
							return err
						}
						return storetest.Increment(d.DCs, "shared")
					}); err != nil {
						errs <- err
						return
					}
				}
			})
		}
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		require.NoError(t, err)
	}
	for i, s := range stores {
		d, err := s.Get(ctx)
		require.NoError(t, err)
		assert.Len(t, d.Pods, 2*perStore, "store %d", i)
		for name, e := range d.Pods {
			assert.Equal(t, strconv.Itoa(increments), e.Reason, name)
		}
		assert.Equal(t, strconv.Itoa(2*perStore*increments), d.DCs["shared"].Reason)
		assert.Equal(t, strconv.Itoa(1+2*perStore*increments), d.ResourceVersion)
	}
}

// fsChildEnv makes the test binary act as a second process that increments
// the shared counter of the file named in the variable.
const fsChildEnv = "PROBER_FILESTORE_CHILD"

func TestFileStoreChildProcess(t *testing.T) {
	path := os.Getenv(fsChildEnv)
	if path == "" {
		t.Skip("helper process for TestFileStoreTwoProcesses")
	}
	n, err := strconv.Atoi(os.Getenv(fsChildEnv + "_N"))
	require.NoError(t, err)
	s := fsOpen(t, path, 0)
	for range n {
		_, err := s.Update(context.Background(), func(d *maintenance.Document) error { return storetest.Increment(d.DCs, "shared") })
		require.NoError(t, err)
	}
}

// TestFileStoreTwoProcesses checks that the flock really serialises
// separate processes: two children and this process increment one counter.
func TestFileStoreTwoProcesses(t *testing.T) {
	const children, increments = 2, 100
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "m.json")
	s := fsOpen(t, path, 0)

	cmds := make([]*exec.Cmd, children)
	for i := range cmds {
		cmds[i] = exec.Command(os.Args[0], "-test.run=^TestFileStoreChildProcess$", "-test.count=1")
		cmds[i].Env = append(os.Environ(), fsChildEnv+"="+path, fsChildEnv+"_N="+strconv.Itoa(increments))
		require.NoError(t, cmds[i].Start())
	}
	for range increments {
		_, err := s.Update(ctx, func(d *maintenance.Document) error { return storetest.Increment(d.DCs, "shared") })
		require.NoError(t, err)
	}
	for _, c := range cmds {
		require.NoError(t, c.Wait())
	}
	d, err := s.Get(ctx)
	require.NoError(t, err)
	assert.Equal(t, strconv.Itoa((children+1)*increments), d.DCs["shared"].Reason)
	assert.Equal(t, strconv.Itoa(1+(children+1)*increments), d.ResourceVersion)
}

func TestFileStoreLockHonoursContext(t *testing.T) {
	path := filepath.Join(t.TempDir(), "m.json")
	s := fsOpen(t, path, 0)

	// Hold the lock as another process would.
	lock, err := os.OpenFile(path+".lock", os.O_RDWR, 0)
	require.NoError(t, err)
	defer lock.Close()
	require.NoError(t, unix.Flock(int(lock.Fd()), unix.LOCK_EX))

	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	_, err = s.Update(ctx, func(d *maintenance.Document) error { return storetest.Increment(d.DCs, "x") })
	require.ErrorIs(t, err, context.DeadlineExceeded)

	require.NoError(t, unix.Flock(int(lock.Fd()), unix.LOCK_UN))
	d, err := s.Update(context.Background(), func(d *maintenance.Document) error { return storetest.Increment(d.DCs, "x") })
	require.NoError(t, err)
	assert.Equal(t, "1", d.DCs["x"].Reason)
	assert.Equal(t, "2", d.ResourceVersion)
}

func TestFileStoreWatch(t *testing.T) {
	const wait = 5 * time.Second
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "m.json")
	// A poll interval far above the deadline of the own-write check shows
	// that own writes do not wait for the poller.
	a := fsOpen(t, path, time.Hour)
	b := fsOpen(t, path, 20*time.Millisecond)

	wctx, cancel := context.WithCancel(ctx)
	defer cancel()
	chA, err := a.Watch(wctx)
	require.NoError(t, err)
	chB, err := b.Watch(wctx)
	require.NoError(t, err)

	t.Run("nothing before a write", func(t *testing.T) {
		got, _ := storetest.Receive(chB, 100*time.Millisecond)
		assert.False(t, got)
	})
	t.Run("own write at once", func(t *testing.T) {
		_, err := a.Update(ctx, func(d *maintenance.Document) error { return storetest.Increment(d.Pods, "nats-0") })
		require.NoError(t, err)
		got, open := storetest.Receive(chA, time.Second)
		assert.True(t, got && open)
	})
	t.Run("other process's write within the poll interval", func(t *testing.T) {
		got, open := storetest.Receive(chB, wait)
		assert.True(t, got && open)
	})
	t.Run("coalesced", func(t *testing.T) {
		for range 5 {
			_, err := b.Update(ctx, func(d *maintenance.Document) error { return storetest.Increment(d.Pods, "nats-0") })
			require.NoError(t, err)
		}
		got, open := storetest.Receive(chB, time.Second)
		require.True(t, got && open)
		got, _ = storetest.Receive(chB, 100*time.Millisecond)
		assert.False(t, got, "five writes, one pending value")
	})
	t.Run("no write, no notification", func(t *testing.T) {
		_, err := b.Update(ctx, func(*maintenance.Document) error { return nil })
		require.NoError(t, err)
		got, _ := storetest.Receive(chB, 100*time.Millisecond)
		assert.False(t, got)
	})
	t.Run("closed when the context ends", func(t *testing.T) {
		cctx, ccancel := context.WithCancel(ctx)
		ch, err := b.Watch(cctx)
		require.NoError(t, err)
		ccancel()
		got, open := storetest.Receive(ch, wait)
		assert.True(t, got)
		assert.False(t, open)
	})
	t.Run("closed when the store closes", func(t *testing.T) {
		c, err := Open(path, Options{Logger: zerolog.Nop()})
		require.NoError(t, err)
		ch, err := c.Watch(ctx)
		require.NoError(t, err)
		require.NoError(t, c.Close())
		got, open := storetest.Receive(ch, wait)
		assert.True(t, got)
		assert.False(t, open)
		_, err = c.Watch(ctx)
		assert.Error(t, err)
		_, err = c.Update(ctx, func(d *maintenance.Document) error { return storetest.Increment(d.Pods, "x") })
		assert.Error(t, err)
		assert.NoError(t, c.Close(), "second close")
	})
}

func TestFileStoreCorruptFile(t *testing.T) {
	tests := []struct {
		name    string
		content string
		want    string
	}{
		{"garbage", "not json at all", "corrupt file"},
		{"empty", "", "the file is empty"},
		{"truncated", `{"resourceVersion":"3","data":{"pod.nats-0":"{}"`, "corrupt file"},
		{"unknown field", `{"resourceVersion":"3","data":{},"extra":1}`, "corrupt file"},
		{"resourceVersion not a counter", `{"resourceVersion":"abc","data":{}}`, "not a counter"},
		{"missing resourceVersion", `{"data":{}}`, "not a counter"},
		{"bad key", `{"resourceVersion":"3","data":{"node.x":"{}"}}`, "unknown key"},
		{"bad entry", `{"resourceVersion":"3","data":{"pod.x":"[]"}}`, `"pod.x"`},
		{"key with a space", `{"resourceVersion":"3","data":{"pod.a b":"{}"}}`, `"pod.a b"`},
		{"pod name with upper case", `{"resourceVersion":"3","data":{"pod.Nats-0":"{}"}}`, "not a DNS-1123 label"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ctx := context.Background()
			path := filepath.Join(t.TempDir(), "m.json")

			// A store opened on a good file sees the corruption on use.
			s := fsOpen(t, path, 0)
			require.NoError(t, os.WriteFile(path, []byte(tt.content), 0o644))
			_, err := s.Get(ctx)
			require.Error(t, err)
			assert.Contains(t, err.Error(), tt.want)
			assert.Contains(t, err.Error(), path)
			assert.Equal(t, maintenance.EUnavailable, maintenance.ErrorCode(err), "%v", err)
			assert.Contains(t, maintenance.ErrorMessage(err), "stored maintenance state is unreadable")
			_, err = s.Update(ctx, func(d *maintenance.Document) error { return storetest.Increment(d.Pods, "x") })
			require.Error(t, err)
			assert.Contains(t, err.Error(), tt.want)

			// Opening a corrupt file fails too.
			_, err = Open(path, Options{Logger: zerolog.Nop()})
			require.Error(t, err)
			assert.Contains(t, err.Error(), tt.want)

			b, err := os.ReadFile(path)
			require.NoError(t, err)
			assert.Equal(t, tt.content, string(b), "never overwritten")
		})
	}
}

func TestOpenFileStoreRejects(t *testing.T) {
	dir := t.TempDir()
	_, err := Open("", Options{})
	assert.Error(t, err)
	_, err = Open(filepath.Join(dir, "m.json"), Options{PollInterval: -time.Second})
	assert.Error(t, err)
	// The parent is a file, so the directory cannot be made.
	require.NoError(t, os.WriteFile(filepath.Join(dir, "file"), nil, 0o644))
	_, err = Open(filepath.Join(dir, "file", "m.json"), Options{})
	assert.Error(t, err)
}

func BenchmarkFileStoreUpdate(b *testing.B) {
	ctx := context.Background()
	s := fsOpen(b, filepath.Join(b.TempDir(), "m.json"), 0)
	for b.Loop() {
		if _, err := s.Update(ctx, func(d *maintenance.Document) error { return storetest.Increment(d.DCs, "n") }); err != nil {
			b.Fatal(err)
		}
	}
}

// TestFileStoreGetCache: Get keeps the document of a file whose stamp has
// not changed and that is older than racyWindow, and reads again any file
// whose stamp changed, and a file that new even when its stamp did not (an
// edit in place of the same size within the mtime's granularity). Each Get
// hands out a copy of its own.
func TestFileStoreGetCache(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "m.json")
	s := fsOpen(t, path, time.Hour)
	_, err := s.Update(ctx, func(d *maintenance.Document) error {
		d.Pods["nats-0"] = maintenance.Entry{Reason: "aaaa", Since: t0}
		return nil
	})
	require.NoError(t, err)
	original, err := os.ReadFile(path)
	require.NoError(t, err)
	sameSize := []byte(strings.Replace(string(original), "aaaa", "bbbb", 1))
	require.NotEqual(t, original, sameSize)
	reason := func() string {
		t.Helper()
		d, err := s.Get(ctx)
		require.NoError(t, err)
		return d.Pods["nats-0"].Reason
	}
	// writeInPlace rewrites the file (same inode) and sets its mtime.
	writeInPlace := func(b []byte, mtime time.Time) {
		t.Helper()
		require.NoError(t, os.WriteFile(path, b, 0o644))
		require.NoError(t, os.Chtimes(path, mtime, mtime))
	}

	// A new file is read every time, even when an edit kept its stamp.
	fi, err := os.Stat(path)
	require.NoError(t, err)
	assert.Equal(t, "aaaa", reason())
	writeInPlace(sameSize, fi.ModTime())
	assert.Equal(t, "bbbb", reason(), "a file within the racy window is read again")

	// An older file is kept while its stamp holds: a change that kept the
	// stamp is not read (what the cache saves), one that moved it is.
	old := time.Now().Add(-time.Hour)
	writeInPlace(original, old)
	assert.Equal(t, "aaaa", reason())
	writeInPlace(sameSize, old)
	assert.Equal(t, "aaaa", reason(), "an unchanged stamp is answered from the cache")
	writeInPlace(sameSize, old.Add(time.Millisecond))
	assert.Equal(t, "bbbb", reason(), "a new mtime is read")
	writeInPlace([]byte(strings.Replace(string(original), "aaaa", "aaaaa", 1)), old.Add(time.Millisecond))
	assert.Equal(t, "aaaaa", reason(), "a new size is read")

	// Each Get is a copy: changing one changes neither the cache nor the file.
	d, err := s.Get(ctx)
	require.NoError(t, err)
	d.Pods["nats-0"] = maintenance.Entry{Reason: "changed by a caller", Since: t0}
	delete(d.Pods, "nats-0")
	assert.Equal(t, "aaaaa", reason())

	// A write of the store's own replaces the file: the next Get sees it.
	_, err = s.Update(ctx, func(d *maintenance.Document) error {
		d.Pods["nats-0"] = maintenance.Entry{Reason: "cccc", Since: t0}
		return nil
	})
	require.NoError(t, err)
	assert.Equal(t, "cccc", reason())

	// A corrupt file is reported, never hidden behind the cache.
	writeInPlace([]byte("not json"), old.Add(2*time.Millisecond))
	_, err = s.Get(ctx)
	assert.Equal(t, maintenance.EUnavailable, maintenance.ErrorCode(err), "%v", err)
}
