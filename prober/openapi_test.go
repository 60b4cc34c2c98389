package prober

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"reflect"
	"regexp"
	"sort"
	"strings"
	"testing"

	"github.com/gorilla/mux"
	"github.com/rs/zerolog"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/prober-dev/prober/events"
	"github.com/prober-dev/prober/maintenance"
	"github.com/prober-dev/prober/natsraft"
)

func mustAPIDoc(t *testing.T) *apiDoc {
	t.Helper()
	d, err := parseAPIDoc(OpenAPI())
	require.NoError(t, err)
	return d
}

// TestOpenAPIDocument checks the document itself: version, unique
// operation ids, resolvable references, declared path parameters, and the
// enums that mirror Go constants.
func TestOpenAPIDocument(t *testing.T) {
	d := mustAPIDoc(t)
	assert.Regexp(t, `^3\.1\.\d+$`, d.root["openapi"])

	t.Run("every $ref resolves", func(t *testing.T) {
		var refs []string
		var walk func(v any)
		walk = func(v any) {
			switch v := v.(type) {
			case map[string]any:
				if ref, ok := v["$ref"].(string); ok {
					refs = append(refs, ref)
				}
				for _, x := range v {
					walk(x)
				}
			case []any:
				for _, x := range v {
					walk(x)
				}
			}
		}
		walk(d.root)
		require.NotEmpty(t, refs)
		for _, ref := range refs {
			_, err := d.pointer(ref)
			assert.NoError(t, err)
		}
	})

	t.Run("operations", func(t *testing.T) {
		ids := map[string]string{}
		for _, o := range d.operations() {
			name := o.method + " " + o.path
			id, _ := o.op["operationId"].(string)
			if assert.NotEmpty(t, id, name) {
				assert.NotContains(t, ids, id, "operationId of %s is also %s's", name, ids[id])
				ids[id] = name
			}
			assert.NotEmpty(t, o.op["summary"], name)
			responses, _ := o.op["responses"].(map[string]any)
			require.NotEmpty(t, responses, name)
			for status, r := range responses {
				resp, err := d.deref(r)
				require.NoError(t, err, "%s %s", name, status)
				_, _, ok := mediaSchema(resp)
				assert.True(t, ok, "%s %s: no schema", name, status)
			}
			// Every {param} of the template is declared as a path parameter.
			for _, m := range regexp.MustCompile(`\{([^}]+)\}`).FindAllStringSubmatch(o.path, -1) {
				assert.Contains(t, d.pathParams(t, o), m[1], "%s: path parameter %s", name, m[1])
			}
		}
	})

	t.Run("enums mirror the Go constants", func(t *testing.T) {
		phases := []string{}
		for _, p := range []maintenance.Phase{
			maintenance.PhaseActive, maintenance.PhaseRequested, maintenance.PhaseHandingOff,
			maintenance.PhaseFencing, maintenance.PhaseInMaintenance, maintenance.PhaseUnfencing,
			maintenance.PhaseCatchingUp, maintenance.PhaseFailed,
		} {
			phases = append(phases, string(p))
		}
		assert.ElementsMatch(t, phases, d.enum(t, "#/components/schemas/Phase"))
		assert.ElementsMatch(t, []string{maintenance.ModeFence, maintenance.ModeDrain}, d.enum(t, "#/components/schemas/Mode"))

		codes := []string{maintenance.EInternal}
		for code := range statusOf {
			codes = append(codes, code)
		}
		assert.ElementsMatch(t, codes, d.enum(t, "#/components/schemas/ErrorCode"))

		assert.ElementsMatch(t, []string{
			maintenance.LostRequested, maintenance.LostInMaintenance, maintenance.LostUnreachable,
			maintenance.LostStopping, maintenance.LostNotCurrent, maintenance.LostOffline, maintenance.LostDraining,
		}, d.enum(t, "#/components/schemas/LostPeer/properties/why"))

		// In the diagnosis's own order, so that the document lists the
		// causes as findings of one severity are listed.
		var causes []string
		for _, c := range natsraft.Causes() {
			causes = append(causes, string(c))
		}
		assert.Equal(t, causes, d.enum(t, "#/components/schemas/Finding/properties/cause"))
		var severities []string
		for _, s := range natsraft.Severities {
			severities = append(severities, string(s))
		}
		assert.Equal(t, severities, d.enum(t, "#/components/schemas/Finding/properties/severity"))
		assert.Equal(t, events.Types, d.enum(t, "#/components/schemas/EventType"))
		xTypes, err := d.pointer("#/paths/~1events/get/responses/200/x-event-types")
		require.NoError(t, err)
		var documented []string
		for typ := range xTypes.(map[string]any) {
			documented = append(documented, typ)
		}
		assert.ElementsMatch(t, events.Types, documented, "x-event-types of GET /events")
	})

	t.Run("error statuses follow the code table", func(t *testing.T) {
		// Each shared error response is used only under the status its
		// codes map to.
		for _, o := range d.operations() {
			responses, _ := o.op["responses"].(map[string]any)
			for status, r := range responses {
				ref, _ := r.(map[string]any)["$ref"].(string)
				code, ok := map[string]string{
					"#/components/responses/Invalid":      maintenance.EInvalid,
					"#/components/responses/Unauthorized": maintenance.EUnauthorized,
					"#/components/responses/Forbidden":    maintenance.EForbidden,
					"#/components/responses/NotFound":     maintenance.ENotFound,
					"#/components/responses/Conflict":     maintenance.EUnsafe,
					"#/components/responses/TooLarge":     maintenance.ETooLarge,
					"#/components/responses/Internal":     maintenance.EInternal,
					"#/components/responses/Unavailable":  maintenance.EUnavailable,
				}[ref]
				if ok {
					assert.Equal(t, fmt.Sprint(ErrorStatus(code)), status, "%s %s uses %s", o.method, o.path, ref)
				}
			}
		}
	})
}

// TestOpenAPIFields checks the schemas against the Go types the API
// encodes: every JSON field is documented, a required property is one that
// is always encoded, and a closed schema (additionalProperties: false)
// documents no field the type does not have, and requires exactly the
// fields that are always encoded. The findings of /raft are described
// loosely and not checked here.
func TestOpenAPIFields(t *testing.T) {
	d := mustAPIDoc(t)
	for _, tc := range []struct {
		schema string
		v      any
		input  bool // a request body: every field is optional
	}{
		{schema: "PodList", v: PodList{}},
		{schema: "PodView", v: maintenance.PodView{}},
		{schema: "PodRaft", v: maintenance.PodRaft{}},
		{schema: "PodChange", v: PodChange{}},
		{schema: "DCView", v: DCView{}},
		{schema: "DCChange", v: DCChange{}},
		{schema: "DryRun", v: DryRunResponse{}},
		{schema: "Violation", v: maintenance.Violation{}},
		{schema: "LostPeer", v: maintenance.LostPeer{}},
		{schema: "Entry", v: maintenance.Entry{}},
		{schema: "Status", v: maintenance.Status{}},
		{schema: "Document", v: maintenance.Document{}},
		{schema: "EnterRequest", v: enterBody{}, input: true},
		{schema: "Probe", v: ProbeResponse{}},
		{schema: "PreStopReport", v: maintenance.PreStopReport{}},
		{schema: "Error/properties/error", v: maintenance.Error{}},
		{schema: "Raft", v: RaftResponse{}},
		{schema: "Node", v: natsraft.Node{}},
		{schema: "RouteError", v: natsraft.RouteError{}},
		{schema: "Resources", v: natsraft.Resources{}},
		{schema: "Resources/properties/slowConsumerKinds", v: natsraft.SlowConsumers{}},
		{schema: "RaftRegression", v: natsraft.RaftRegression{}},
		{schema: "Group", v: natsraft.Group{}},
		{schema: "Peer", v: natsraft.Peer{}},
		{schema: "PhaseEvent", v: events.PhaseChange{}},
		{schema: "StateEvent", v: events.StateChange{}},
		{schema: "FindingEvent", v: events.FindingChange{}},
		{schema: "LeaderEvent", v: events.LeaderChange{}},
		{schema: "ResetEvent", v: events.Reset{}},
		{schema: "DroppedEvent", v: events.Dropped{}},
	} {
		t.Run(tc.schema, func(t *testing.T) {
			raw, err := d.pointer("#/components/schemas/" + tc.schema)
			require.NoError(t, err)
			schema := raw.(map[string]any)
			props, _ := schema["properties"].(map[string]any)
			var required []string
			for _, r := range asSlice(schema["required"]) {
				required = append(required, r.(string))
			}
			fields := map[string]bool{} // JSON name -> may be left out
			jsonFields(reflect.TypeOf(tc.v), fields)
			require.NotEmpty(t, fields)

			var always []string
			for name, optional := range fields {
				assert.Contains(t, props, name, "%T field %q is not documented", tc.v, name)
				if !optional {
					always = append(always, name)
				}
			}
			for _, name := range required {
				assert.False(t, fields[name], "%q is required but %T may leave it out", name, tc.v)
			}
			if closed, ok := schema["additionalProperties"].(bool); ok && !closed {
				for name := range props {
					assert.Contains(t, fields, name, "%q is documented but %T has no such field", name, tc.v)
				}
				if !tc.input {
					assert.ElementsMatch(t, always, required, "required of %s vs the fields %T always encodes", tc.schema, tc.v)
				}
			}
		})
	}
}

func asSlice(v any) []any {
	s, _ := v.([]any)
	return s
}

// jsonFields records the JSON names of t's fields as encoding/json sees
// them, with whether omitempty or omitzero may leave each out; embedded
// structs are flattened.
func jsonFields(t reflect.Type, out map[string]bool) {
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	for i := range t.NumField() {
		f := t.Field(i)
		name, opts, _ := strings.Cut(f.Tag.Get("json"), ",")
		if name == "-" && opts == "" {
			continue
		}
		ft := f.Type
		if ft.Kind() == reflect.Pointer {
			ft = ft.Elem()
		}
		if f.Anonymous && name == "" && ft.Kind() == reflect.Struct {
			jsonFields(ft, out)
			continue
		}
		if !f.IsExported() {
			continue
		}
		if name == "" {
			name = f.Name
		}
		optional := false
		for _, o := range strings.Split(opts, ",") {
			optional = optional || o == "omitempty" || o == "omitzero"
		}
		out[name] = optional
	}
}

// pathParams returns the names of the path parameters declared on the
// path item or the operation.
func (d *apiDoc) pathParams(t *testing.T, o operation) []string {
	t.Helper()
	item, err := d.pointer("#/paths/" + strings.ReplaceAll(strings.ReplaceAll(o.path, "~", "~0"), "/", "~1"))
	require.NoError(t, err)
	var params []any
	params = append(params, item.(map[string]any)["parameters"].([]any)...)
	if ps, ok := o.op["parameters"].([]any); ok {
		params = append(params, ps...)
	}
	var names []string
	for _, p := range params {
		pm, err := d.deref(p)
		require.NoError(t, err)
		if pm["in"] == "path" {
			assert.Equal(t, true, pm["required"], "path parameter %v must be required", pm["name"])
			names = append(names, pm["name"].(string))
		}
	}
	return names
}

// enum returns the string enum of the schema at ref.
func (d *apiDoc) enum(t *testing.T, ref string) []string {
	t.Helper()
	v, err := d.pointer(ref)
	require.NoError(t, err)
	var out []string
	for _, e := range v.(map[string]any)["enum"].([]any) {
		out = append(out, e.(string))
	}
	return out
}

// TestOpenAPIRoutes walks the router and checks that the document has
// exactly its routes and, for each, exactly the methods it answers (HEAD
// aside, which comes with GET). The methods are read from the Allow header
// of the 405 that every route answers to OPTIONS.
func TestOpenAPIRoutes(t *testing.T) {
	d := mustAPIDoc(t)
	s := NewServer(Options{Addr: "127.0.0.1:0", Logger: zerolog.Nop()})

	registered := map[string][]string{}
	varRE := regexp.MustCompile(`\{([^}:]+)(:[^}]*)?\}`)
	err := s.router.Walk(func(route *mux.Route, _ *mux.Router, _ []*mux.Route) error {
		tpl, err := route.GetPathTemplate()
		if err != nil {
			return fmt.Errorf("route without a path template: %w", err)
		}
		path := varRE.ReplaceAllString(tpl, "x")
		rec := httptest.NewRecorder()
		s.Handler().ServeHTTP(rec, httptest.NewRequest(http.MethodOptions, path, nil))
		allow := rec.Header().Get("Allow")
		if rec.Code != http.StatusMethodNotAllowed || allow == "" {
			return fmt.Errorf("route %s answers OPTIONS %d with Allow %q; register it with Server.route", tpl, rec.Code, allow)
		}
		var ms []string
		for _, m := range strings.Split(allow, ",") {
			if m = strings.TrimSpace(m); m != http.MethodHead {
				ms = append(ms, m)
			}
		}
		if strings.Contains(allow, http.MethodHead) {
			assert.Contains(t, allow, http.MethodGet, "%s serves HEAD without GET", tpl)
		}
		sort.Strings(ms)
		registered[varRE.ReplaceAllString(tpl, "{$1}")] = ms
		return nil
	})
	require.NoError(t, err)
	require.NotEmpty(t, registered)

	documented := map[string][]string{}
	for _, o := range d.operations() {
		documented[o.path] = append(documented[o.path], o.method)
	}
	for _, ms := range documented {
		sort.Strings(ms)
	}
	for path, ms := range registered {
		assert.Equal(t, ms, documented[path], "methods of %s: registered vs documented", path)
	}
	for path := range documented {
		assert.Contains(t, registered, path, "%s is documented but has no route", path)
	}
}

// TestOpenAPIServed checks that GET /openapi.json serves the document.
func TestOpenAPIServed(t *testing.T) {
	s := NewServer(Options{Addr: "127.0.0.1:0", Logger: zerolog.Nop()})
	for _, method := range []string{http.MethodGet, http.MethodHead} {
		rec := httptest.NewRecorder()
		s.Handler().ServeHTTP(rec, httptest.NewRequest(method, "/openapi.json", nil))
		assert.Equal(t, http.StatusOK, rec.Code, method)
		assert.Equal(t, "application/json", rec.Header().Get("Content-Type"), method)
		if method == http.MethodGet {
			assert.JSONEq(t, string(OpenAPI()), rec.Body.String())
		} else {
			assert.Empty(t, rec.Body.Bytes())
		}
	}
}

// TestOpenAPIValidator shows that the validator catches each kind of
// mismatch, on the document's own schemas.
func TestOpenAPIValidator(t *testing.T) {
	d := mustAPIDoc(t)
	ref := func(name string) any { return map[string]any{"$ref": "#/components/schemas/" + name} }
	pod := `{"pod":"nats-1","dc":"dc1","inMaintenance":true,"via":"pod","phase":"InMaintenance",
		"reason":"kernel","since":"2026-01-02T03:04:05.123Z","raft":{"leads":[],"groups":3,"lag":0,"current":true,"reachable":true}}`
	for _, tc := range []struct {
		name   string
		schema any
		body   string
		want   string // "" for valid, else a part of the error
	}{
		{"pod view", ref("PodView"), pod, ""},
		{"missing required", ref("PodView"), strings.Replace(pod, `"dc":"dc1",`, "", 1), `missing required "dc"`},
		{"wrong type", ref("PodView"), strings.Replace(pod, `"inMaintenance":true`, `"inMaintenance":"yes"`, 1), "$.inMaintenance: want type boolean, got string"},
		{"enum", ref("PodView"), strings.Replace(pod, `"InMaintenance"`, `"Sleeping"`, 1), "$.phase: Sleeping is not one of"},
		{"undocumented property", ref("PodView"), strings.Replace(pod, `"pod":`, `"color":"red","pod":`, 1), `property "color" is not documented`},
		{"date-time", ref("PodView"), strings.Replace(pod, `2026-01-02T03:04:05.123Z`, `yesterday`, 1), `"yesterday" is not a date-time`},
		{"nested integer", ref("PodView"), strings.Replace(pod, `"groups":3`, `"groups":1.5`, 1), "$.raft.groups: want type integer, got number"},
		{"minimum", ref("PodView"), strings.Replace(pod, `"lag":0`, `"lag":-1`, 1), "$.raft.lag: -1 is below the minimum 0"},
		{"items", ref("PodView"), strings.Replace(pod, `"leads":[]`, `"leads":["demo",7]`, 1), "$.raft.leads[1]: want type string"},
		{"null is not an array", ref("PodView"), strings.Replace(pod, `"leads":[]`, `"leads":null`, 1), "$.raft.leads: want type array, got null"},
		{"map values", ref("Document"), `{"pods":{"a":{"since":"x"}},"dcs":{},"status":{},"resourceVersion":"1"}`, `$.pods.a.since: "x" is not a date-time`},
		{"pattern", ref("EnterRequest"), `{"ttl":"soon"}`, `"soon" does not match`},
		{"max length", ref("EnterRequest"), `{"reason":"` + strings.Repeat("x", maintenance.MaxReasonLength+1) + `"}`, "longer than 1024"},
		{"duration", ref("EnterRequest"), `{"reason":"x","ttl":"1h30m","force":true}`, ""},
		{
			"oneOf none", map[string]any{"oneOf": []any{ref("PodChange"), ref("DryRun")}},
			`{"dryRun":true}`, "matches 0 of the oneOf schemas",
		},
		{
			"oneOf one", map[string]any{"oneOf": []any{ref("PodChange"), ref("DryRun")}},
			`{"dryRun":true,"safe":true,"changed":true,"violations":[],"pods":[]}`, "",
		},
		{"error", ref("Error"), `{"error":{"code":"unsafe","message":"m","details":[1,"x"]}}`, ""},
		{"error code", ref("Error"), `{"error":{"code":"oops","message":"m"}}`, "$.error.code: oops is not one of"},
		{"conflict details", ref("ConflictError"), `{"error":{"code":"unsafe","message":"m","details":[{"group":"demo"}]}}`, `$.error.details[0]: missing required "kind"`},
		{"open object", ref("Raft"), `{"at":"2026-01-02T03:04:05Z","nodes":[],"groups":[],"ageSeconds":0.5,"findings":[{"cause":"DNS","more":1}],"draining":[],"leaderSkew":[],"extra":{}}`, ""},
		{"finding cause", ref("Raft"), `{"at":"2026-01-02T03:04:05Z","nodes":[],"groups":[],"ageSeconds":0.5,"findings":[{"cause":"x"}],"draining":[],"leaderSkew":[]}`, "$.findings[0].cause: x is not one of"},
		{"unknown keyword", map[string]any{"type": "string", "minLength": json.Number("1")}, `"x"`, `keyword "minLength" is not supported`},
		{"bad ref", map[string]any{"$ref": "#/components/schemas/Nope"}, `{}`, `no "Nope"`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			v, err := decodeJSON([]byte(tc.body))
			require.NoError(t, err)
			err = d.validate(tc.schema, v)
			if tc.want == "" {
				assert.NoError(t, err)
			} else if assert.Error(t, err) {
				assert.Contains(t, err.Error(), tc.want)
			}
		})
	}
}
