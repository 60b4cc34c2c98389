package filestore

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"time"

	"github.com/prober-dev/prober/maintenance"
	"github.com/rs/zerolog"
	"golang.org/x/sys/unix"
)

// DefaultPollInterval is how often a Store looks for changes written
// by other processes when Options.PollInterval is zero.
const DefaultPollInterval = time.Second

// Options configures a Store.
type Options struct {
	// PollInterval is how often Watch looks at the file for writes by other
	// processes; zero means DefaultPollInterval. Own writes are
	// announced at once.
	PollInterval time.Duration
	// Logger receives the store's diagnostics.
	Logger zerolog.Logger
}

// Store is the Store of the embedded default and of non-Kubernetes
// installs: one JSON file, {"resourceVersion":"<n>","data":{…}}, whose data
// is the same key/value form as the ConfigMap (see maintenance.Document.Data).
//
// Every write replaces the file atomically (temporary file in the same
// directory, fsync, rename, fsync of the directory), so a reader never sees
// half a document and a crash leaves either the old or the new one. Writers
// are serialised by a mutex between goroutines and by flock(2) on a sibling
// "<file>.lock" between processes; the resourceVersion counts writes and
// Update compare-and-swaps on it, so no update is lost even between two
// processes sharing the file. A file that does not decode is reported, never
// overwritten.
type Store struct {
	path string
	log  zerolog.Logger
	poll time.Duration

	// sem serialises this store's writers; a channel so that waiting for it
	// honours the context.
	sem  chan struct{}
	lock *os.File // the open "<file>.lock", flock'ed while writing

	mu       sync.Mutex
	watchers map[chan struct{}]struct{}
	seenRV   string // last resourceVersion announced to watchers
	seenStat stamp  // stat of the file when seenRV was read
	closed   bool

	// cacheMu guards cached: the document Get last decoded and the stamp
	// of the file it came from, so that a Get of an unchanged file costs a
	// stat(2) and a copy rather than an open, a read and a strict decode.
	cacheMu sync.Mutex
	cached  *cachedDoc

	stop chan struct{}
	done chan struct{}
}

// cachedDoc is a decoded document and the stamp of the very file read.
type cachedDoc struct {
	doc *maintenance.Document
	st  stamp
}

// racyWindow is how much older than its reading a file must be for Get to
// keep its document: a file changed again within the filesystem's
// timestamp granularity of a write could keep its stamp (an edit in place
// of the same size), so a file that new is read again each time, as git
// treats a "racily clean" entry.
const racyWindow = 2 * time.Second

// stamp is what the poller compares to skip reading an unchanged file.
type stamp struct {
	ino   uint64
	size  int64
	mtime int64 // nanoseconds
}

// fileDoc is the on-disk shape.
type fileDoc struct {
	ResourceVersion string            `json:"resourceVersion"`
	Data            map[string]string `json:"data"`
	// doc is Data decoded, when read from the file.
	doc *maintenance.Document
}

// Compile-time check that Store is a Store.
var _ maintenance.Store = (*Store)(nil)

// Open opens the store kept in the file at path, creating the file
// (with an empty document at resourceVersion "1") and its directory if they
// are missing. An existing file that does not decode is an error. Close
// releases it.
func Open(path string, o Options) (*Store, error) {
	if path == "" {
		return nil, fmt.Errorf("open file store: empty path")
	}
	if o.PollInterval < 0 {
		return nil, fmt.Errorf("open file store %s: negative poll interval %s", path, o.PollInterval)
	}
	if o.PollInterval == 0 {
		o.PollInterval = DefaultPollInterval
	}
	abs, err := filepath.Abs(path)
	if err != nil {
		return nil, fmt.Errorf("open file store %s: %w", path, err)
	}
	if err := os.MkdirAll(filepath.Dir(abs), 0o755); err != nil {
		return nil, fmt.Errorf("open file store %s: %w", abs, err)
	}
	lock, err := os.OpenFile(abs+".lock", os.O_RDWR|os.O_CREATE, 0o644)
	if err != nil {
		return nil, fmt.Errorf("open file store %s: lock file: %w", abs, err)
	}
	s := &Store{
		path:     abs,
		log:      o.Logger.With().Str("store", abs).Logger(),
		poll:     o.PollInterval,
		sem:      make(chan struct{}, 1),
		lock:     lock,
		watchers: map[chan struct{}]struct{}{},
		stop:     make(chan struct{}),
		done:     make(chan struct{}),
	}
	if err := s.init(); err != nil {
		_ = lock.Close()
		return nil, err
	}
	go s.pollLoop()
	return s, nil
}

// init creates the file if it is missing (under the lock, so that two
// processes opening at once agree) and checks that it decodes.
func (s *Store) init() error {
	ctx := context.Background()
	if err := s.acquire(ctx); err != nil {
		return err
	}
	defer s.release()
	f, st, err := s.readFile()
	if errors.Is(err, os.ErrNotExist) {
		if err := s.writeFile(&fileDoc{ResourceVersion: "1", Data: map[string]string{}}); err != nil {
			return err
		}
		f, st, err = s.readFile()
	}
	if err != nil {
		return err
	}
	s.seenRV, s.seenStat = f.ResourceVersion, st
	return nil
}

// Get returns the document as currently stored, a copy of its own for the
// caller. Reads take no lock: the file is only ever replaced whole. A file
// whose stamp (inode, size, mtime) is the one last decoded, and old enough
// (see racyWindow), is not read again.
func (s *Store) Get(ctx context.Context) (*maintenance.Document, error) {
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("file store %s: get: %w", s.path, err)
	}
	if st, err := s.stat(); err == nil {
		s.cacheMu.Lock()
		c := s.cached
		s.cacheMu.Unlock()
		if c != nil && c.st == st {
			return c.doc.Clone(), nil
		}
	}
	began := time.Now()
	f, st, err := s.readFile()
	if err != nil {
		return nil, err
	}
	if began.UnixNano()-st.mtime >= int64(racyWindow) {
		s.cacheMu.Lock()
		s.cached = &cachedDoc{doc: f.doc.Clone(), st: st}
		s.cacheMu.Unlock()
	}
	return f.doc, nil
}

// Update reads the document, applies fn to a private copy and, if fn
// changed it, writes it back on condition that the stored resourceVersion
// is still the one read. On a conflict (another goroutine or process wrote
// in between) it re-reads under the lock and applies fn once more to the
// fresh document, then writes while still holding the lock, so it never
// loops and never loses an update. fn may therefore run twice, the second
// time with the lock held: it must be quick and must not call Update. An
// error from fn aborts without writing and is returned as is. An unchanged
// document is not written. Update returns the document as stored afterwards.
func (s *Store) Update(ctx context.Context, fn func(*maintenance.Document) error) (*maintenance.Document, error) {
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("file store %s: update: %w", s.path, err)
	}
	base, baseData, err := s.read()
	if err != nil {
		return nil, err
	}
	next, nextData, err := s.apply(base, fn)
	if err != nil {
		return nil, err
	}
	if maps.Equal(baseData, nextData) {
		return base, nil
	}

	if err := s.acquire(ctx); err != nil {
		return nil, err
	}
	defer s.release()
	cur, curData, err := s.read()
	if err != nil {
		return nil, err
	}
	if cur.ResourceVersion != base.ResourceVersion {
		s.log.Debug().Str("read", base.ResourceVersion).Str("stored", cur.ResourceVersion).
			Msg("update conflict, applying again")
		if next, nextData, err = s.apply(cur, fn); err != nil {
			return nil, err
		}
		if maps.Equal(curData, nextData) {
			return cur, nil
		}
	}
	rv, err := strconv.ParseUint(cur.ResourceVersion, 10, 64)
	if err != nil {
		return nil, fmt.Errorf("file store %s: resourceVersion %q: %w", s.path, cur.ResourceVersion, err)
	}
	next.ResourceVersion = strconv.FormatUint(rv+1, 10)
	if err := s.writeFile(&fileDoc{ResourceVersion: next.ResourceVersion, Data: nextData}); err != nil {
		return nil, err
	}
	s.announce(next.ResourceVersion)
	return next, nil
}

// apply runs fn on a copy of d and encodes the result.
func (s *Store) apply(d *maintenance.Document, fn func(*maintenance.Document) error) (*maintenance.Document, map[string]string, error) {
	next := d.Clone()
	if err := fn(next); err != nil {
		return nil, nil, err
	}
	next.ResourceVersion = d.ResourceVersion
	data, err := next.Data()
	if err != nil {
		return nil, nil, fmt.Errorf("file store %s: encode: %w", s.path, err)
	}
	return next, data, nil
}

// Watch returns a channel that receives a value after every change of the
// stored document: at once after this store's own writes, and within the
// poll interval after writes by other processes. Values are coalesced (the
// channel holds at most one), so a receiver should re-read the document. The
// channel is closed when ctx ends or the store is closed.
func (s *Store) Watch(ctx context.Context) (<-chan struct{}, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return nil, fmt.Errorf("file store %s: watch: store is closed", s.path)
	}
	ch := make(chan struct{}, 1)
	s.watchers[ch] = struct{}{}
	go func() {
		select {
		case <-ctx.Done():
		case <-s.stop:
		}
		s.mu.Lock()
		defer s.mu.Unlock()
		if _, ok := s.watchers[ch]; ok {
			delete(s.watchers, ch)
			close(ch)
		}
	}()
	return ch, nil
}

// Close stops the poller, closes every Watch channel and releases the lock
// file. It is safe to call more than once.
func (s *Store) Close() error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil
	}
	s.closed = true
	close(s.stop)
	for ch := range s.watchers {
		delete(s.watchers, ch)
		close(ch)
	}
	s.mu.Unlock()
	<-s.done
	// Wait for a writer still holding the lock file before closing it.
	s.sem <- struct{}{}
	defer func() { <-s.sem }()
	if err := s.lock.Close(); err != nil {
		return fmt.Errorf("file store %s: close: %w", s.path, err)
	}
	return nil
}

// announce records rv as seen and wakes every watcher if it is new.
func (s *Store) announce(rv string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.announceLocked(rv)
}

func (s *Store) announceLocked(rv string) {
	if rv == s.seenRV {
		return
	}
	s.seenRV = rv
	for ch := range s.watchers {
		select {
		case ch <- struct{}{}:
		default:
		}
	}
}

// pollLoop notices writes by other processes.
func (s *Store) pollLoop() {
	defer close(s.done)
	t := time.NewTicker(s.poll)
	defer t.Stop()
	for {
		select {
		case <-s.stop:
			return
		case <-t.C:
			s.pollOnce()
		}
	}
}

func (s *Store) pollOnce() {
	st, err := s.stat()
	if err != nil {
		s.log.Warn().Err(err).Msg("poll")
		return
	}
	// Reading under mu orders this read with the announcement of an own
	// write, so an older revision read here is never announced after it.
	s.mu.Lock()
	defer s.mu.Unlock()
	if st == s.seenStat {
		return
	}
	f, st, err := s.readFile()
	if err != nil {
		s.log.Warn().Err(err).Msg("poll")
		return
	}
	s.seenStat = st
	s.announceLocked(f.ResourceVersion)
}

// read returns the stored document and its data.
func (s *Store) read() (*maintenance.Document, map[string]string, error) {
	f, _, err := s.readFile()
	if err != nil {
		return nil, nil, err
	}
	return f.doc, f.Data, nil
}

// unreadable is the error of a file that does not decode (a hand edit gone
// wrong): neither the caller's fault nor a bug, so maintenance.EUnavailable,
// saying what to repair. The store never writes over such a file.
// The client's message leaves out the file's path, which the logs have.
func (s *Store) unreadable(detail string) error {
	return fmt.Errorf("file store %s: %w", s.path, maintenance.Errorf(maintenance.EUnavailable,
		"stored maintenance state is unreadable: corrupt file (fix or remove it): %s", detail))
}

// decodeFile decodes the bytes of a store's file strictly, the stored
// document included, and says what is wrong when they do not decode.
func decodeFile(b []byte) (f *fileDoc, problem string) {
	if len(bytes.TrimSpace(b)) == 0 {
		return nil, "the file is empty"
	}
	f = &fileDoc{}
	if err := maintenance.DecodeStrict(b, f); err != nil {
		return nil, err.Error()
	}
	if _, err := strconv.ParseUint(f.ResourceVersion, 10, 64); err != nil {
		return nil, fmt.Sprintf("resourceVersion %q is not a counter", f.ResourceVersion)
	}
	if f.Data == nil {
		f.Data = map[string]string{}
	}
	d, err := maintenance.DecodeData(f.Data, f.ResourceVersion)
	if err != nil {
		return nil, maintenance.ErrorMessage(err)
	}
	f.doc = d
	return f, ""
}

// readFile reads and decodes the file strictly, returning the stat of the
// very file read. A missing file is an error wrapping os.ErrNotExist; one
// that does not decode is maintenance.EUnavailable (see unreadable).
func (s *Store) readFile() (*fileDoc, stamp, error) {
	fh, err := os.Open(s.path)
	if err != nil {
		return nil, stamp{}, fmt.Errorf("file store %s: %w", s.path, err)
	}
	defer fh.Close()
	fi, err := fh.Stat()
	if err != nil {
		return nil, stamp{}, fmt.Errorf("file store %s: %w", s.path, err)
	}
	var b bytes.Buffer
	if _, err := b.ReadFrom(fh); err != nil {
		return nil, stamp{}, fmt.Errorf("file store %s: read: %w", s.path, err)
	}
	f, problem := decodeFile(b.Bytes())
	if f == nil {
		return nil, stamp{}, s.unreadable(problem)
	}
	return f, stampOf(fi), nil
}

func (s *Store) stat() (stamp, error) {
	fi, err := os.Stat(s.path)
	if err != nil {
		return stamp{}, fmt.Errorf("file store %s: %w", s.path, err)
	}
	return stampOf(fi), nil
}

func stampOf(fi os.FileInfo) stamp {
	st := stamp{size: fi.Size(), mtime: fi.ModTime().UnixNano()}
	if sys, ok := fi.Sys().(*unix.Stat_t); ok {
		st.ino = sys.Ino
	}
	return st
}

// writeFile replaces the file atomically. The caller holds the lock.
func (s *Store) writeFile(f *fileDoc) (err error) {
	b, err := json.MarshalIndent(f, "", "  ")
	if err != nil {
		return fmt.Errorf("file store %s: encode: %w", s.path, err)
	}
	b = append(b, '\n')
	dir := filepath.Dir(s.path)
	tmp, err := os.CreateTemp(dir, filepath.Base(s.path)+".tmp-*")
	if err != nil {
		return fmt.Errorf("file store %s: write: %w", s.path, err)
	}
	defer func() {
		if err != nil {
			_ = tmp.Close()
			_ = os.Remove(tmp.Name())
		}
	}()
	if _, err = tmp.Write(b); err != nil {
		return fmt.Errorf("file store %s: write: %w", s.path, err)
	}
	if err = tmp.Chmod(0o644); err != nil {
		return fmt.Errorf("file store %s: write: %w", s.path, err)
	}
	if err = tmp.Sync(); err != nil {
		return fmt.Errorf("file store %s: fsync: %w", s.path, err)
	}
	if err = tmp.Close(); err != nil {
		return fmt.Errorf("file store %s: write: %w", s.path, err)
	}
	if err = os.Rename(tmp.Name(), s.path); err != nil {
		return fmt.Errorf("file store %s: rename: %w", s.path, err)
	}
	d, err := os.Open(dir)
	if err != nil {
		return fmt.Errorf("file store %s: fsync dir: %w", s.path, err)
	}
	defer d.Close()
	if err = d.Sync(); err != nil {
		return fmt.Errorf("file store %s: fsync dir: %w", s.path, err)
	}
	return nil
}

// acquire takes the in-process semaphore, then the flock on the lock file,
// both honouring ctx. flock has no timeout, so a held lock is polled with a
// short, growing back-off.
func (s *Store) acquire(ctx context.Context) error {
	select {
	case s.sem <- struct{}{}:
	case <-ctx.Done():
		return fmt.Errorf("file store %s: lock: %w", s.path, ctx.Err())
	}
	s.mu.Lock()
	closed := s.closed
	s.mu.Unlock()
	if closed {
		<-s.sem
		return fmt.Errorf("file store %s: store is closed", s.path)
	}
	backoff := 100 * time.Microsecond
	for {
		err := unix.Flock(int(s.lock.Fd()), unix.LOCK_EX|unix.LOCK_NB)
		if err == nil {
			return nil
		}
		if !errors.Is(err, unix.EWOULDBLOCK) && !errors.Is(err, unix.EINTR) {
			<-s.sem
			return fmt.Errorf("file store %s: lock: %w", s.path, err)
		}
		t := time.NewTimer(backoff)
		select {
		case <-t.C:
		case <-ctx.Done():
			t.Stop()
			<-s.sem
			return fmt.Errorf("file store %s: lock: %w", s.path, ctx.Err())
		}
		backoff = min(2*backoff, 10*time.Millisecond)
	}
}

// release drops the flock and the semaphore.
func (s *Store) release() {
	if err := unix.Flock(int(s.lock.Fd()), unix.LOCK_UN); err != nil {
		s.log.Error().Err(err).Msg("unlock")
	}
	<-s.sem
}
