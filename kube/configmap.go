package kube

import (
	"context"
	"errors"
	"fmt"
	"io"
	"maps"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prober-dev/prober/maintenance"
	"github.com/rs/zerolog"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/apimachinery/pkg/watch"
	corev1client "k8s.io/client-go/kubernetes/typed/core/v1"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/util/retry"
)

// Defaults of ConfigMapStoreOptions.
const (
	// DefaultConfigMapName is the ConfigMap the store keeps the document in.
	DefaultConfigMapName = "prober-maintenance"
	// DefaultConfigMapRequestTimeout bounds each request to the API server,
	// so that a hung API server turns into maintenance.EUnavailable instead of a hung
	// caller.
	DefaultConfigMapRequestTimeout = 10 * time.Second
	// DefaultConfigMapWatchTimeout is how long one watch request lasts
	// before the store opens the next one from where it left off.
	DefaultConfigMapWatchTimeout = 5 * time.Minute
)

// DefaultConfigMapRetry paces the attempts of an Update that lost a race
// to a concurrent write: up to 20 attempts, the pause growing from 5 ms by
// 1.3 each time and jittered up to twice its size, about 2.5–5 s in all
// before Update answers EConflict. Jitter spreads racing writers apart; the
// growth keeps many writers from saturating the API server with attempts
// that are bound to conflict: measured with 50 writers on one ConfigMap, it
// doubles the rate of successful writes compared with a constant pause.
var DefaultConfigMapRetry = wait.Backoff{Steps: 20, Duration: 5 * time.Millisecond, Factor: 1.3, Jitter: 1}

// configMapMaxBytes is the API server's limit on the summed size of a
// ConfigMap's keys and values.
const configMapMaxBytes = 1 << 20

// watchBackoff paces listing again after a failed list or watch, and
// watching again after watches that closed at once.
var watchBackoff = wait.Backoff{Duration: 100 * time.Millisecond, Factor: 2, Jitter: 0.5, Steps: 100, Cap: 10 * time.Second}

// cacheMaxAge bounds how long Get serves the watched document without
// hearing from the API server: past it, with no event or bookmark since, a
// Get reads live once (which confirms the cache again), so a watch that
// hangs without closing costs one request per cacheMaxAge, not stale
// reads.
const cacheMaxAge = 30 * time.Second

// ConfigMapStoreOptions configures a ConfigMapStore.
type ConfigMapStoreOptions struct {
	// Namespace of the ConfigMap, normally the pod's own; empty means
	// "default", as for kubectl.
	Namespace string
	// Name of the ConfigMap; empty means DefaultConfigMapName.
	Name string
	// RequestTimeout bounds each API request; zero means
	// DefaultConfigMapRequestTimeout.
	RequestTimeout time.Duration
	// WatchTimeout is the lifetime of one watch request; zero means
	// DefaultConfigMapWatchTimeout.
	WatchTimeout time.Duration
	// Retry paces the attempts of an Update that conflicts with concurrent
	// writes; the zero value means DefaultConfigMapRetry.
	Retry wait.Backoff
	// Logger receives the store's diagnostics.
	Logger zerolog.Logger
}

// ConfigMapStore is the maintenance.Store of Kubernetes mode: the document lives in one
// ConfigMap, one key per pod, dc and status (see Document.Data), so that
// `kubectl get cm prober-maintenance -o yaml` shows it as it is.
//
// Update is a read-modify-write that sends the resourceVersion it read; the
// API server refuses it with 409 Conflict if anyone wrote in between, and
// the store then reads again and re-applies fn (client-go's
// retry.RetryOnConflict), so no update is lost and nothing is ever blindly
// patched. A missing ConfigMap is created on the first write that changes
// something. The Updates of one store run one at a time: goroutines of one
// process would otherwise only make each other conflict, and under heavy
// contention starve; the compare-and-swap is for the writes of other
// processes.
//
// When the API server cannot be reached, Update fails with an *maintenance.Error of
// code maintenance.EUnavailable (HTTP 503) while Get keeps serving the last document
// this store read, wrote or watched: requests that change the desired
// state are refused, readers and the reconciler carry on with the last
// known state, and nothing changes direction because of the outage.
type ConfigMapStore struct {
	cms          corev1client.ConfigMapInterface
	ns, name     string
	log          zerolog.Logger
	timeout      time.Duration
	watchTimeout time.Duration
	retry        wait.Backoff

	// sem serialises this store's writers; a channel so that waiting for
	// it honours the context.
	sem       chan struct{}
	conflicts atomic.Uint64

	mu   sync.Mutex
	last *maintenance.Document // last known document; nil before the first read
	// live holds the watchers with an established watch whose last event
	// decoded; while there is one and confirmed is recent, Get serves last
	// instead of asking the API server.
	live      map[*watcher]bool
	confirmed time.Time
}

// Compile-time check that ConfigMapStore is a Store.
var _ maintenance.Store = (*ConfigMapStore)(nil)

// NewConfigMapStore returns a store on the ConfigMap o.Namespace/o.Name,
// reached through client (for example clientset.CoreV1()). It does not
// contact the API server; the ConfigMap need not exist yet.
func NewConfigMapStore(client corev1client.ConfigMapsGetter, o ConfigMapStoreOptions) *ConfigMapStore {
	if o.Namespace == "" {
		o.Namespace = metav1.NamespaceDefault
	}
	if o.Name == "" {
		o.Name = DefaultConfigMapName
	}
	if o.RequestTimeout <= 0 {
		o.RequestTimeout = DefaultConfigMapRequestTimeout
	}
	if o.WatchTimeout <= 0 {
		o.WatchTimeout = DefaultConfigMapWatchTimeout
	}
	if o.Retry.Steps <= 0 {
		o.Retry = DefaultConfigMapRetry
	}
	return &ConfigMapStore{
		cms:          client.ConfigMaps(o.Namespace),
		ns:           o.Namespace,
		name:         o.Name,
		log:          o.Logger.With().Str("configmap", o.Namespace+"/"+o.Name).Logger(),
		timeout:      o.RequestTimeout,
		watchTimeout: o.WatchTimeout,
		retry:        o.Retry,
		sem:          make(chan struct{}, 1),
		live:         map[*watcher]bool{},
	}
}

// Conflicts returns how many times an Update had to read again and
// re-apply its function because a concurrent write won the race; a figure
// for metrics, and for tests that must see the race really happen.
func (s *ConfigMapStore) Conflicts() uint64 { return s.conflicts.Load() }

// Get returns the document as stored now; a missing ConfigMap is an empty
// document with an empty resourceVersion.
//
// While a Watch of this store is established, Get serves the document the
// watch keeps current instead of a live read, so that callers polling Get
// (requests waiting for a phase) cost the API server nothing; it reads
// live when no watch runs, between two watch requests, after an event that
// did not decode, and once every cacheMaxAge of silence. A write of this
// store is visible to its Gets at once; another writer's shows once the
// watch delivers it, which is before Watch notifies.
//
// If the API server cannot be reached, Get returns a copy of the last
// document this store read, wrote or watched, with a nil error, and logs
// that it did: while the API server is down, reads keep serving the last
// state (writes fail, so it cannot drift from what was acknowledged). Only
// if it has never known the document does it return the *maintenance.Error with code
// EUnavailable.
func (s *ConfigMapStore) Get(ctx context.Context) (*maintenance.Document, error) {
	if d := s.cached(); d != nil {
		return d, nil
	}
	d, _, err := s.read(ctx)
	if err == nil {
		return d, nil
	}
	if maintenance.ErrorCode(err) == maintenance.EUnavailable && !errors.Is(err, errUnreadable) {
		if last := s.lastKnown(); last != nil {
			s.log.Warn().Err(err).Str("resourceVersion", last.ResourceVersion).
				Msg("API server unavailable, serving the last known document")
			return last, nil
		}
	}
	return nil, err
}

// Update reads the document, applies fn to a private copy and, if fn
// changed it, writes it with the resourceVersion it read. A 409 Conflict
// (someone wrote in between), or an AlreadyExists when two stores create
// the ConfigMap at once, makes it read again and re-apply fn, paced by
// ConfigMapStoreOptions.Retry; fn may therefore run several times and must
// only compute. An error from fn aborts without writing and is returned as
// is. An unchanged document is not written. Update returns the document as
// stored afterwards.
//
// Errors: maintenance.EUnavailable when the API server cannot be reached (never served
// from the last known document) or ctx ends while the store's other Updates
// run, maintenance.EConflict when every attempt lost its race, maintenance.ETooLarge when the
// document would not fit in a ConfigMap.
func (s *ConfigMapStore) Update(ctx context.Context, fn func(*maintenance.Document) error) (*maintenance.Document, error) {
	select {
	case s.sem <- struct{}{}:
	case <-ctx.Done():
		return nil, fmt.Errorf("%w: %w", maintenance.Errorf(maintenance.EUnavailable, "configmap %s/%s: update: busy with other writes", s.ns, s.name), ctx.Err())
	}
	defer func() { <-s.sem }()
	var out *maintenance.Document
	attempt := 0
	err := retry.RetryOnConflict(s.retry, func() error {
		if err := ctx.Err(); err != nil {
			return err
		}
		if attempt++; attempt > 1 {
			s.conflicts.Add(1)
		}
		base, cm, err := s.read(ctx)
		if err != nil {
			return err
		}
		next := base.Clone()
		if err := fn(next); err != nil {
			return &fnError{err}
		}
		next.ResourceVersion = base.ResourceVersion
		baseData, err := base.Data()
		if err != nil {
			return fmt.Errorf("%w: %w", maintenance.Errorf(maintenance.EInternal, "configmap %s/%s holds a document that does not encode again", s.ns, s.name), err)
		}
		nextData, err := next.Data()
		if err != nil {
			return err
		}
		if maps.Equal(baseData, nextData) {
			out = base
			return nil
		}
		rv, err := s.write(ctx, cm, nextData)
		if err != nil {
			return err
		}
		next.ResourceVersion = rv
		s.remember(next)
		out = next.Clone()
		return nil
	})
	if err != nil {
		if fe, ok := errors.AsType[*fnError](err); ok {
			return nil, fe.err
		}
		if apierrors.IsConflict(err) {
			s.log.Warn().Int("attempts", attempt).Msg("update gave up after losing every race")
		}
		return nil, s.classify("update", err)
	}
	return out, nil
}

// fnError carries an error of Update's fn through RetryOnConflict, so
// that it is returned as is and never mistaken for a conflict.
type fnError struct{ err error }

func (e *fnError) Error() string { return e.err.Error() }

// read fetches the ConfigMap (nil if missing) and decodes it. Errors are
// classified.
func (s *ConfigMapStore) read(ctx context.Context) (*maintenance.Document, *corev1.ConfigMap, error) {
	rctx, cancel := context.WithTimeout(ctx, s.timeout)
	defer cancel()
	cm, err := s.cms.Get(rctx, s.name, metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		d := maintenance.NewDocument()
		s.remember(d)
		return d.Clone(), nil, nil
	}
	if err != nil {
		return nil, nil, s.classify("get", err)
	}
	d, err := s.decode(cm)
	if err != nil {
		return nil, nil, err
	}
	s.remember(d)
	s.confirm()
	return d.Clone(), cm, nil
}

// errUnreadable marks the error of a ConfigMap that does not decode, so
// that Get does not mistake it for an outage and serve the last document.
var errUnreadable = errors.New("the ConfigMap does not decode")

// decode turns the ConfigMap into a document. A ConfigMap that does not
// decode (a hand edit gone wrong) is neither the caller's fault nor a bug:
// maintenance.EUnavailable, with the key at fault in the client's message so that the
// operator knows what to repair. The store never writes over it: Update
// fails until it is fixed.
func (s *ConfigMapStore) decode(cm *corev1.ConfigMap) (*maintenance.Document, error) {
	d, err := maintenance.DecodeData(cm.Data, cm.ResourceVersion)
	if err != nil {
		return nil, fmt.Errorf("%w: %w: %w", maintenance.Errorf(maintenance.EUnavailable,
			"stored maintenance state is unreadable: configmap %s/%s: %s", s.ns, s.name, maintenance.ErrorMessage(err)),
			errUnreadable, err)
	}
	return d, nil
}

// write stores data: an Update carrying cm's resourceVersion, or a Create
// when cm is nil. It returns the new resourceVersion, or the API error
// unchanged (a conflict must reach RetryOnConflict as one).
func (s *ConfigMapStore) write(ctx context.Context, cm *corev1.ConfigMap, data map[string]string) (string, error) {
	size := 0
	for k, v := range data {
		size += len(k) + len(v)
	}
	if cm != nil {
		for k, v := range cm.BinaryData {
			size += len(k) + len(v)
		}
	}
	if size > configMapMaxBytes {
		return "", maintenance.Errorf(maintenance.ETooLarge, "the maintenance document would take %d bytes, a ConfigMap holds at most %d", size, configMapMaxBytes)
	}
	rctx, cancel := context.WithTimeout(ctx, s.timeout)
	defer cancel()
	if cm == nil {
		created, err := s.cms.Create(rctx, &corev1.ConfigMap{
			ObjectMeta: metav1.ObjectMeta{
				Name:      s.name,
				Namespace: s.ns,
				Labels:    map[string]string{"app.kubernetes.io/managed-by": "prober"},
			},
			Data: data,
		}, metav1.CreateOptions{})
		if apierrors.IsAlreadyExists(err) {
			// Another writer created it since we read: a conflict like
			// any other, so read again.
			return "", apierrors.NewConflict(schema.GroupResource{Resource: "configmaps"}, s.name, err)
		}
		if apierrors.IsForbidden(err) {
			// The install ships the ConfigMap and the RBAC grants no
			// create (it cannot be limited to one name): someone deleted
			// it. Say what to do rather than fail as an internal error.
			return "", fmt.Errorf("%w: %w", maintenance.Errorf(maintenance.EUnavailable,
				"the maintenance ConfigMap %s/%s is missing and the prober may not create it: recreate the ConfigMap %s "+
					"(kubectl apply -k deploy/, or an empty ConfigMap of that name)", s.ns, s.name, s.name), err)
		}
		if err != nil {
			return "", err
		}
		return created.ResourceVersion, nil
	}
	// Only Data changes; labels, annotations and binaryData set by others
	// are kept. The copy carries the resourceVersion read, which makes the
	// API server refuse the write if the object moved on.
	nextCM := cm.DeepCopy()
	nextCM.Data = data
	updated, err := s.cms.Update(rctx, nextCM, metav1.UpdateOptions{})
	if err != nil {
		return "", err
	}
	return updated.ResourceVersion, nil
}

// classify turns an error from the API into the project's coded *maintenance.Error,
// wrapping the cause; an error that already carries a code is returned as
// is.
func (s *ConfigMapStore) classify(op string, err error) error {
	if _, ok := errors.AsType[*maintenance.Error](err); ok {
		return err
	}
	where := fmt.Sprintf("configmap %s/%s: %s", s.ns, s.name, op)
	switch {
	case apiUnavailable(err):
		return fmt.Errorf("%w: %w", maintenance.Errorf(maintenance.EUnavailable, "%s: the Kubernetes API server is unavailable", where), err)
	case apierrors.IsConflict(err):
		return fmt.Errorf("%w: %w", maintenance.Errorf(maintenance.EConflict, "%s: too many concurrent changes, try again", where), err)
	case apierrors.IsRequestEntityTooLargeError(err):
		return fmt.Errorf("%w: %w", maintenance.Errorf(maintenance.ETooLarge, "%s: the document is too large", where), err)
	default:
		return fmt.Errorf("%s: %w", where, err)
	}
}

// cmUnavailable reports whether err means that the API server could not
// be reached or could not serve: a transport error (refused, reset, TLS,
// EOF), a timeout, 429 or a 5xx. A caller's cancellation is not.
func apiUnavailable(err error) bool {
	if errors.Is(err, context.Canceled) {
		return false
	}
	var st apierrors.APIStatus
	if errors.As(err, &st) {
		code := st.Status().Code
		return code == http.StatusTooManyRequests || code >= http.StatusInternalServerError ||
			apierrors.IsTimeout(err) || apierrors.IsServerTimeout(err)
	}
	if _, ok := errors.AsType[*url.Error](err); ok {
		return true
	}
	if _, ok := errors.AsType[net.Error](err); ok {
		return true
	}
	return errors.Is(err, context.DeadlineExceeded) || errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF)
}

// remember records d as the last known document unless a newer one is
// already known. resourceVersions are opaque in general; those from etcd
// are increasing integers, and two that parse are compared as such so that
// a slow read cannot overwrite what a watch already saw. d is copied.
func (s *ConfigMapStore) remember(d *maintenance.Document) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.last != nil && d.ResourceVersion != "" && s.last.ResourceVersion != "" {
		newRV, err1 := strconv.ParseUint(d.ResourceVersion, 10, 64)
		oldRV, err2 := strconv.ParseUint(s.last.ResourceVersion, 10, 64)
		if err1 == nil && err2 == nil && newRV < oldRV {
			return
		}
	}
	s.last = d.Clone()
}

// cached returns a copy of the watched document when an established watch
// keeps it current and the API server confirmed it within cacheMaxAge;
// nil otherwise.
func (s *ConfigMapStore) cached() *maintenance.Document {
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.live) == 0 || s.last == nil || time.Since(s.confirmed) > cacheMaxAge {
		return nil
	}
	return s.last.Clone()
}

// confirm records that the API server just confirmed the last known
// document (an event, a bookmark, a live read).
func (s *ConfigMapStore) confirm() {
	s.mu.Lock()
	s.confirmed = time.Now()
	s.mu.Unlock()
}

// setLive records whether w keeps the document current.
func (s *ConfigMapStore) setLive(w *watcher, on bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	switch {
	case on && !s.live[w]:
		s.live[w] = true
		s.confirmed = time.Now()
	case !on:
		delete(s.live, w)
	}
}

// lastKnown returns a copy of the last known document, nil if none.
func (s *ConfigMapStore) lastKnown() *maintenance.Document {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.last.Clone()
}

// Watch returns a channel that receives a value after every change of the
// ConfigMap, whoever made it. Values are coalesced (the channel holds at
// most one), so a receiver should re-read the document. The channel is
// closed when ctx ends.
//
// Behind it is client-go's Reflector over this one object (field selector
// metadata.name): it lists (or streams the initial state), watches from
// there, resumes from the last resourceVersion seen when a watch ends, and
// lists again after errors, an expired resourceVersion (410 Gone) or an API
// server restart, paced by a growing back-off while the API server stays
// unreachable and when watches keep closing at once. A re-list that finds
// the document changed notifies too, so no change is missed across an
// outage. Changes made between the call and the first list are notified as
// well: if the store has not known the document before, the first list
// notifies once.
func (s *ConfigMapStore) Watch(ctx context.Context) (<-chan struct{}, error) {
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("configmap %s/%s: watch: %w", s.ns, s.name, err)
	}
	ch := make(chan struct{}, 1)
	w := &watcher{s: s, ch: ch}
	if last := s.lastKnown(); last != nil {
		w.seen, w.known = last.ResourceVersion, true
	}
	selector := fields.OneTermEqualSelector("metadata.name", s.name).String()
	lw := &cache.ListWatch{
		ListWithContextFunc: func(ctx context.Context, o metav1.ListOptions) (runtime.Object, error) {
			o.FieldSelector = selector
			rctx, cancel := context.WithTimeout(ctx, s.timeout)
			defer cancel()
			return s.cms.List(rctx, o)
		},
		WatchFuncWithContext: func(ctx context.Context, o metav1.ListOptions) (watch.Interface, error) {
			o.FieldSelector = selector
			// The Reflector asks for 5 to 10 minutes; the store's own
			// lifetime applies (the API server and client-go end the
			// watch then, and the Reflector resumes it).
			secs := max(int64(s.watchTimeout/time.Second), 1)
			o.TimeoutSeconds = &secs
			wi, err := s.cms.Watch(ctx, o)
			if err != nil {
				return nil, err
			}
			return w.track(wi), nil
		},
	}
	backoff := watchBackoff
	// The Reflector streams the initial state where the client supports
	// it (WatchList), and lists where it says it does not.
	r := cache.NewReflectorWithOptions(cache.ToListWatcherWithWatchListSemantics(lw, s.cms), &corev1.ConfigMap{}, w, cache.ReflectorOptions{
		Name:    fmt.Sprintf("configmap %s/%s", s.ns, s.name),
		Backoff: &backoff,
	})
	go func() {
		defer close(ch)
		r.RunWithContext(ctx)
	}()
	return ch, nil
}

// watcher is one Watch: the store its Reflector keeps current (it learns
// every version of the ConfigMap into the ConfigMapStore's last known
// document) and the receiver's channel.
type watcher struct {
	s  *ConfigMapStore
	ch chan struct{}

	mu sync.Mutex
	// seen is the resourceVersion of the document last notified ("" for
	// a missing ConfigMap); known is false until there is one.
	seen  string
	known bool
	// good is false while the last ConfigMap seen did not decode: Get then
	// reads live, and answers the decode error.
	good bool
	// open counts this watcher's established watches (0 or 1, briefly 2
	// while the Reflector replaces one).
	open int
}

// Compile-time checks: the Reflector keeps a watcher current and tells it
// of bookmarks.
var (
	_ cache.ReflectorStore         = (*watcher)(nil)
	_ cache.ReflectorBookmarkStore = (*watcher)(nil)
)

// track counts wi among the established watches until it is stopped: while
// one is, and the last ConfigMap seen decoded, the store's Get serves the
// watched document.
func (w *watcher) track(wi watch.Interface) watch.Interface {
	w.mu.Lock()
	w.open++
	w.updateLive()
	w.mu.Unlock()
	return &trackedWatch{Interface: wi, stop: func() {
		w.mu.Lock()
		w.open--
		w.updateLive()
		w.mu.Unlock()
	}}
}

// updateLive tells the store whether this watcher keeps its document
// current. w.mu is held.
func (w *watcher) updateLive() {
	w.s.setLive(w, w.open > 0 && w.good)
}

// trackedWatch is a watch that reports when it is stopped, once.
type trackedWatch struct {
	watch.Interface
	once sync.Once
	stop func()
}

func (t *trackedWatch) Stop() {
	t.Interface.Stop()
	t.once.Do(t.stop)
}

// Add, Update and Delete apply a watch event; Replace applies a list.

func (w *watcher) Add(obj any) error    { return w.learn(obj) }
func (w *watcher) Update(obj any) error { return w.learn(obj) }

func (w *watcher) Delete(any) error {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.s.remember(maintenance.NewDocument())
	w.s.confirm()
	w.good = true
	w.updateLive()
	w.announce("")
	return nil
}

func (w *watcher) Replace(list []any, _ string) error {
	if len(list) == 0 {
		return w.Delete(nil)
	}
	return w.learn(list[0])
}

// Resync has nothing to do: the watcher keeps no queue.
func (w *watcher) Resync() error { return nil }

// Bookmark confirms the watched document: the API server is reachable and
// nothing changed.
func (w *watcher) Bookmark(string) error {
	w.s.confirm()
	return nil
}

// learn decodes the ConfigMap into the store's last known document and
// notifies the receiver if it is a new version. A ConfigMap that does not
// decode is logged; Get then reads live and answers the error.
func (w *watcher) learn(obj any) error {
	cm, ok := obj.(*corev1.ConfigMap)
	if !ok {
		return fmt.Errorf("unexpected %T from the watch", obj)
	}
	d, err := w.s.decode(cm)
	w.mu.Lock()
	defer w.mu.Unlock()
	w.good = err == nil
	if err != nil {
		w.s.log.Error().Err(err).Msg("watch")
	} else {
		w.s.remember(d)
		w.s.confirm()
	}
	w.updateLive()
	w.announce(cm.ResourceVersion)
	return nil
}

// announce notifies the receiver if rv is not the last notified version.
// w.mu is held.
func (w *watcher) announce(rv string) {
	if w.known && rv == w.seen {
		return
	}
	w.seen, w.known = rv, true
	select {
	case w.ch <- struct{}{}:
	default:
	}
}
