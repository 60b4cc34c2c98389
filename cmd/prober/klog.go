package main

import (
	"github.com/go-logr/logr/funcr"
	"github.com/rs/zerolog"
	"k8s.io/klog/v2"
)

// routeKlog sends what client-go logs through klog (its Reflectors'
// warnings, say) to log, so that the sidecar writes one format only.
func routeKlog(log zerolog.Logger) {
	l := log.With().Str("component", "client-go").Logger()
	klog.SetLogger(funcr.New(func(prefix, args string) {
		l.Info().Str("logger", prefix).Msg(args)
	}, funcr.Options{}))
}
