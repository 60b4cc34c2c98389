package prober

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"math/big"
	"net/http"
	"reflect"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"
)

// apiDoc is the parsed OpenAPI document with a small JSON Schema validator
// over it: type, enum, required, properties, additionalProperties, items,
// oneOf/anyOf/allOf, $ref into the document, format date-time, pattern,
// maxLength and minimum. That is every keyword the document uses; a keyword
// the validator does not know is an error, so the document cannot quietly
// outgrow it.
type apiDoc struct {
	root map[string]any
}

// knownKeywords are the schema keywords the validator checks, and the
// annotations it ignores.
var knownKeywords = map[string]bool{
	"$ref": true, "type": true, "enum": true, "required": true, "properties": true,
	"additionalProperties": true, "items": true, "oneOf": true, "anyOf": true, "allOf": true,
	"format": true, "pattern": true, "maxLength": true, "minimum": true,
	// annotations
	"description": true, "example": true, "title": true,
}

// parseAPIDoc decodes the document, keeping numbers exact.
func parseAPIDoc(b []byte) (*apiDoc, error) {
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.UseNumber()
	var root map[string]any
	if err := dec.Decode(&root); err != nil {
		return nil, fmt.Errorf("decode OpenAPI document: %w", err)
	}
	return &apiDoc{root: root}, nil
}

// decodeJSON decodes an answer the way parseAPIDoc decodes the document.
func decodeJSON(b []byte) (any, error) {
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.UseNumber()
	var v any
	if err := dec.Decode(&v); err != nil {
		return nil, err
	}
	return v, nil
}

// pointer resolves a local reference such as "#/components/schemas/PodView".
func (d *apiDoc) pointer(ref string) (any, error) {
	if !strings.HasPrefix(ref, "#/") {
		return nil, fmt.Errorf("$ref %q: only local references are supported", ref)
	}
	var cur any = d.root
	for _, tok := range strings.Split(ref[2:], "/") {
		tok = strings.ReplaceAll(strings.ReplaceAll(tok, "~1", "/"), "~0", "~")
		m, ok := cur.(map[string]any)
		if !ok {
			return nil, fmt.Errorf("$ref %q: %q is not inside an object", ref, tok)
		}
		if cur, ok = m[tok]; !ok {
			return nil, fmt.Errorf("$ref %q: no %q", ref, tok)
		}
	}
	return cur, nil
}

// deref follows $ref until it reaches an object without one (for
// parameters, responses and request bodies, whose $ref has no siblings).
func (d *apiDoc) deref(v any) (map[string]any, error) {
	for range 16 {
		m, ok := v.(map[string]any)
		if !ok {
			return nil, fmt.Errorf("%v is not an object", v)
		}
		ref, ok := m["$ref"].(string)
		if !ok {
			return m, nil
		}
		var err error
		if v, err = d.pointer(ref); err != nil {
			return nil, err
		}
	}
	return nil, errors.New("$ref chain too long")
}

// operation is one method of one path of the document.
type operation struct {
	path, method string
	op           map[string]any
}

// operations lists every documented path and method.
func (d *apiDoc) operations() []operation {
	paths, _ := d.root["paths"].(map[string]any)
	var out []operation
	for path, item := range paths {
		m, _ := item.(map[string]any)
		for method, op := range m {
			switch method {
			case "get", "put", "post", "delete", "patch", "head", "options", "trace":
				o, _ := op.(map[string]any)
				out = append(out, operation{path: path, method: strings.ToUpper(method), op: o})
			}
		}
	}
	slices.SortFunc(out, func(a, b operation) int { return strings.Compare(a.path+" "+a.method, b.path+" "+b.method) })
	return out
}

// templateRE turns an OpenAPI path template into a regexp of the paths it
// matches.
func templateRE(tpl string) *regexp.Regexp {
	segs := strings.Split(tpl, "/")
	for i, s := range segs {
		if strings.HasPrefix(s, "{") && strings.HasSuffix(s, "}") {
			segs[i] = `[^/]+`
		} else {
			segs[i] = regexp.QuoteMeta(s)
		}
	}
	return regexp.MustCompile("^" + strings.Join(segs, "/") + "$")
}

// find returns the documented operation for a concrete request.
func (d *apiDoc) find(method, path string) (operation, bool) {
	for _, o := range d.operations() {
		if o.method == method && templateRE(o.path).MatchString(path) {
			return o, true
		}
	}
	return operation{}, false
}

// hasPath reports whether a documented path template matches path.
func (d *apiDoc) hasPath(path string) bool {
	paths, _ := d.root["paths"].(map[string]any)
	for tpl := range paths {
		if templateRE(tpl).MatchString(path) {
			return true
		}
	}
	return false
}

// response returns the documented response of an operation for a status.
func (d *apiDoc) response(o operation, status int) (map[string]any, error) {
	responses, _ := o.op["responses"].(map[string]any)
	r, ok := responses[strconv.Itoa(status)]
	if !ok {
		return nil, fmt.Errorf("%s %s: status %d is not documented", o.method, o.path, status)
	}
	return d.deref(r)
}

// mediaSchema returns the media type and schema of a response or body:
// application/json when documented, else its only other media type.
func mediaSchema(r map[string]any) (string, any, bool) {
	content, _ := r["content"].(map[string]any)
	for mt, m := range content {
		if mt == "application/json" || len(content) == 1 {
			media, _ := m.(map[string]any)
			s, ok := media["schema"]
			return mt, s, ok
		}
	}
	return "", nil, false
}

// validateAnswer checks an answer of the API against the document: the
// status must be documented for the operation (405 and an unknown path are
// answered by the router and take the Error schema), the body must match
// the schema and a documented Location header must be there.
func (d *apiDoc) validateAnswer(method, path string, status int, header http.Header, body []byte) error {
	var schema any
	mediaType := "application/json"
	o, found := d.find(method, path)
	switch {
	case found:
		r, err := d.response(o, status)
		if err != nil {
			return err
		}
		headers, _ := r["headers"].(map[string]any)
		for name := range headers {
			if header.Get(name) == "" {
				return fmt.Errorf("%s %s %d: no %s header", method, path, status, name)
			}
		}
		mt, s, ok := mediaSchema(r)
		if !ok {
			return fmt.Errorf("%s %s %d: no schema", method, path, status)
		}
		mediaType, schema = mt, s
	case status == http.StatusMethodNotAllowed && d.hasPath(path),
		status == http.StatusNotFound && !d.hasPath(path):
		schema = map[string]any{"$ref": "#/components/schemas/Error"}
	default:
		return fmt.Errorf("%s %s: not documented (status %d)", method, path, status)
	}
	ct := header.Get("Content-Type")
	if mediaType != "application/json" {
		// Text is checked for its media type and against a string schema.
		if !strings.HasPrefix(ct, mediaType) {
			return fmt.Errorf("%s %s %d: Content-Type %q, want %s", method, path, status, ct, mediaType)
		}
		return d.validate(schema, string(body))
	}
	if ct != "application/json" {
		return fmt.Errorf("%s %s %d: Content-Type %q", method, path, status, ct)
	}
	v, err := decodeJSON(body)
	if err != nil {
		return fmt.Errorf("%s %s %d: body is not JSON: %w", method, path, status, err)
	}
	if err := d.validate(schema, v); err != nil {
		return fmt.Errorf("%s %s %d: %w", method, path, status, err)
	}
	return nil
}

// validate checks v against schema and returns every mismatch, each with
// the JSON path where it is.
func (d *apiDoc) validate(schema, v any) error {
	var problems []string
	d.check(schema, v, "$", &problems, 0)
	if len(problems) > 0 {
		return errors.New(strings.Join(problems, "; "))
	}
	return nil
}

func (d *apiDoc) check(schema, v any, at string, problems *[]string, depth int) {
	fail := func(format string, args ...any) {
		*problems = append(*problems, at+": "+fmt.Sprintf(format, args...))
	}
	if depth > 64 {
		fail("schema nested too deeply")
		return
	}
	if b, ok := schema.(bool); ok {
		if !b {
			fail("no value is allowed here")
		}
		return
	}
	s, ok := schema.(map[string]any)
	if !ok {
		fail("schema is %T, not an object", schema)
		return
	}
	for k := range s {
		if !knownKeywords[k] {
			fail("schema keyword %q is not supported by the validator", k)
		}
	}
	if ref, ok := s["$ref"].(string); ok {
		target, err := d.pointer(ref)
		if err != nil {
			fail("%v", err)
			return
		}
		d.check(target, v, at, problems, depth+1)
	}
	if t, ok := s["type"]; ok && !typeMatches(t, v) {
		fail("want type %v, got %s", t, jsonType(v))
		return
	}
	if enum, ok := s["enum"].([]any); ok && !slices.ContainsFunc(enum, func(e any) bool { return reflect.DeepEqual(e, v) }) {
		fail("%v is not one of %v", v, enum)
	}
	if f, ok := s["format"]; ok && f != "date-time" {
		fail("format %v is not supported by the validator", f)
	}
	if str, ok := v.(string); ok {
		if s["format"] == "date-time" {
			if _, err := time.Parse(time.RFC3339Nano, str); err != nil {
				fail("%q is not a date-time", str)
			}
		}
		if p, ok := s["pattern"].(string); ok {
			re, err := regexp.Compile(p)
			if err != nil {
				fail("bad pattern %q: %v", p, err)
			} else if !re.MatchString(str) {
				fail("%q does not match %s", str, p)
			}
		}
		if n, ok := s["maxLength"].(json.Number); ok {
			if limit, err := n.Int64(); err == nil && int64(utf8.RuneCountInString(str)) > limit {
				fail("longer than %d", limit)
			}
		}
	}
	if n, ok := v.(json.Number); ok {
		if m, ok := s["minimum"].(json.Number); ok {
			x, _ := new(big.Float).SetString(n.String())
			y, _ := new(big.Float).SetString(m.String())
			if x != nil && y != nil && x.Cmp(y) < 0 {
				fail("%s is below the minimum %s", n, m)
			}
		}
	}
	if obj, ok := v.(map[string]any); ok {
		d.checkObject(s, obj, at, problems, depth)
	}
	if arr, ok := v.([]any); ok {
		if items, ok := s["items"]; ok {
			for i, e := range arr {
				d.check(items, e, fmt.Sprintf("%s[%d]", at, i), problems, depth+1)
			}
		}
	}
	for _, kw := range []string{"oneOf", "anyOf", "allOf"} {
		subs, ok := s[kw].([]any)
		if !ok {
			continue
		}
		var passed int
		var why []string
		for _, sub := range subs {
			var p []string
			d.check(sub, v, at, &p, depth+1)
			if len(p) == 0 {
				passed++
			} else {
				why = append(why, strings.Join(p, ", "))
			}
		}
		switch {
		case kw == "oneOf" && passed != 1:
			fail("matches %d of the oneOf schemas, want exactly 1 (%s)", passed, strings.Join(why, " | "))
		case kw == "anyOf" && passed == 0:
			fail("matches none of the anyOf schemas (%s)", strings.Join(why, " | "))
		case kw == "allOf" && passed != len(subs):
			fail("fails allOf: %s", strings.Join(why, " | "))
		}
	}
}

func (d *apiDoc) checkObject(s, obj map[string]any, at string, problems *[]string, depth int) {
	if req, ok := s["required"].([]any); ok {
		for _, r := range req {
			if name, _ := r.(string); name != "" {
				if _, ok := obj[name]; !ok {
					*problems = append(*problems, fmt.Sprintf("%s: missing required %q", at, name))
				}
			}
		}
	}
	props, _ := s["properties"].(map[string]any)
	keys := make([]string, 0, len(obj))
	for k := range obj {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	for _, k := range keys {
		if ps, ok := props[k]; ok {
			d.check(ps, obj[k], at+"."+k, problems, depth+1)
			continue
		}
		if ap, ok := s["additionalProperties"]; ok {
			if b, isBool := ap.(bool); isBool && !b {
				*problems = append(*problems, fmt.Sprintf("%s: property %q is not documented", at, k))
				continue
			}
			d.check(ap, obj[k], at+"."+k, problems, depth+1)
		}
	}
}

// typeMatches reports whether v is of the JSON Schema type t (a name or a
// list of names).
func typeMatches(t, v any) bool {
	switch t := t.(type) {
	case string:
		return isType(t, v)
	case []any:
		for _, x := range t {
			if name, _ := x.(string); isType(name, v) {
				return true
			}
		}
	}
	return false
}

func isType(name string, v any) bool {
	switch name {
	case "null":
		return v == nil
	case "boolean":
		_, ok := v.(bool)
		return ok
	case "string":
		_, ok := v.(string)
		return ok
	case "object":
		_, ok := v.(map[string]any)
		return ok
	case "array":
		_, ok := v.([]any)
		return ok
	case "number":
		_, ok := v.(json.Number)
		return ok
	case "integer":
		n, ok := v.(json.Number)
		if !ok {
			return false
		}
		f, _, err := big.ParseFloat(n.String(), 10, 256, big.ToNearestEven)
		return err == nil && f.IsInt()
	}
	return false
}

func jsonType(v any) string {
	switch v := v.(type) {
	case nil:
		return "null"
	case bool:
		return "boolean"
	case string:
		return "string"
	case map[string]any:
		return "object"
	case []any:
		return "array"
	case json.Number:
		if isType("integer", v) {
			return "integer"
		}
		return "number"
	}
	return fmt.Sprintf("%T", v)
}
