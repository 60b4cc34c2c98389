package app

import (
	"github.com/rs/zerolog"

	"github.com/prober-dev/prober/events"
	"github.com/prober-dev/prober/maintenance"
	"github.com/prober-dev/prober/natsraft"
	"github.com/prober-dev/prober/prober"
)

// eventFeed is an application's event stream: the hub GET /events serves,
// and the watcher that feeds it by comparing the stored document and the
// collector's views. The watcher runs in the app's group; the hub closes
// when the app ends.
type eventFeed struct {
	hub *events.Hub
	log zerolog.Logger
}

func newEventFeed(log zerolog.Logger) *eventFeed {
	log = log.With().Str("component", "events").Logger()
	return &eventFeed{hub: events.NewHub(events.HubOptions{Logger: log}), log: log}
}

// watcher returns the watcher that feeds the hub from store and the
// collector, with the findings srv's /raft shows. dcs, when not nil, gives
// the pods' dcs as the maintenance service sees them.
func (f *eventFeed) watcher(store maintenance.Store, c *natsraft.Collector, dcs func() map[string]string, srv *prober.Server) *events.Watcher {
	return events.NewWatcher(events.WatcherOptions{
		Hub:      f.hub,
		Store:    store,
		Latest:   c.Latest,
		DCs:      dcs,
		Diagnose: srv.Diagnose,
		Logger:   f.log,
	})
}
