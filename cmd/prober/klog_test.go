package main

import (
	"bytes"
	"encoding/json"
	"testing"

	"github.com/rs/zerolog"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"k8s.io/klog/v2"
)

func TestRouteKlog(t *testing.T) {
	var buf bytes.Buffer
	routeKlog(zerolog.New(&buf))
	t.Cleanup(klog.ClearLogger)
	klog.InfoS("watch ended", "reflector", "configmap default/prober-maintenance")
	klog.Flush()
	var line map[string]any
	require.NoError(t, json.Unmarshal(bytes.TrimSpace(buf.Bytes()), &line), "one JSON line: %s", buf.String())
	assert.Equal(t, "client-go", line["component"])
	assert.Contains(t, line["message"], "watch ended")
	assert.Contains(t, line["message"], "configmap default/prober-maintenance")
}
