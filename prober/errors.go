package prober

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"

	"github.com/prober-dev/prober/maintenance"
)

// statusOf is the one table from error code to HTTP status. A code that is
// not in it is an internal error.
var statusOf = map[string]int{
	maintenance.EInvalid:      http.StatusBadRequest,
	maintenance.EUnauthorized: http.StatusUnauthorized,
	maintenance.EForbidden:    http.StatusForbidden,
	maintenance.ENotFound:     http.StatusNotFound,
	maintenance.EMethod:       http.StatusMethodNotAllowed,
	maintenance.EUnsafe:       http.StatusConflict,
	maintenance.EConflict:     http.StatusConflict,
	maintenance.ETooLarge:     http.StatusRequestEntityTooLarge,
	maintenance.EUnavailable:  http.StatusServiceUnavailable,
}

// ErrorStatus returns the HTTP status for an error code; 500 for EInternal
// and any code it does not know.
func ErrorStatus(code string) int {
	if status, ok := statusOf[code]; ok {
		return status
	}
	return http.StatusInternalServerError
}

// ErrorResponse is the body of every error answer:
// {"error":{"code","message","details"}}.
type ErrorResponse struct {
	Error maintenance.Error `json:"error"`
}

// internalErrorBody is all a client learns of an internal error.
var internalErrorBody = ErrorResponse{Error: maintenance.Error{Code: maintenance.EInternal, Message: "internal error"}}

// writeError answers err as JSON with the status of its code. The message
// of a coded error is shown as is; any other error is logged and shown only
// as "internal error".
func (s *Server) writeError(w http.ResponseWriter, r *http.Request, err error) {
	var e *maintenance.Error
	switch {
	case errors.As(err, &e) && ErrorStatus(e.Code) != http.StatusInternalServerError:
		s.writeJSON(w, r, ErrorStatus(e.Code), ErrorResponse{Error: *e})
	case r.Context().Err() != nil && (errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded)):
		// The client went away; nobody reads the answer.
		s.log.Debug().Err(err).Str("path", r.URL.Path).Msg("request cancelled")
		s.writeJSON(w, r, http.StatusServiceUnavailable, ErrorResponse{Error: maintenance.Error{
			Code: maintenance.EUnavailable, Message: "request cancelled",
		}})
	default:
		s.log.Error().Err(err).Str("method", r.Method).Str("path", r.URL.Path).Msg("internal error")
		s.writeJSON(w, r, http.StatusInternalServerError, internalErrorBody)
	}
}

// writeJSON answers v as indented JSON with the status.
func (s *Server) writeJSON(w http.ResponseWriter, r *http.Request, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(status)
	if r.Method == http.MethodHead {
		return
	}
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	if err := enc.Encode(v); err != nil {
		s.log.Debug().Err(err).Str("path", r.URL.Path).Msg("write response")
	}
}
