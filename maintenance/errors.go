package maintenance

import (
	"errors"
	"fmt"
)

// Error codes, mapped to HTTP statuses in one table in package prober.
const (
	EInvalid      = "invalid"      // 400
	EUnauthorized = "unauthorized" // 401
	EForbidden    = "forbidden"    // 403
	ENotFound     = "not_found"    // 404
	EMethod       = "method_not_allowed"
	EUnsafe       = "unsafe"      // 409: would cost a Raft group its quorum
	EConflict     = "conflict"    // 409: concurrent change
	ETooLarge     = "too_large"   // 413
	EUnavailable  = "unavailable" // 503
	EInternal     = "internal"    // 500
)

// Error is the one coded error type of the project. Message is safe to show
// to clients; Details carries structured data (for EUnsafe the violations).
type Error struct {
	Code    string `json:"code"`
	Message string `json:"message"`
	Details any    `json:"details,omitempty"`
}

func (e *Error) Error() string { return fmt.Sprintf("%s: %s", e.Code, e.Message) }

// Errorf returns an *Error with the code and a formatted message.
func Errorf(code, format string, args ...any) *Error {
	return &Error{Code: code, Message: fmt.Sprintf(format, args...)}
}

// ErrorCode returns the code of the first *Error in err's chain, EInternal
// for any other non-nil error and "" for nil.
func ErrorCode(err error) string {
	if err == nil {
		return ""
	}
	var e *Error
	if errors.As(err, &e) {
		return e.Code
	}
	return EInternal
}

// ErrorMessage returns the message of the first *Error in err's chain,
// err's own text for any other error and "" for nil: what a client may be
// shown of an error that another message quotes.
func ErrorMessage(err error) string {
	if err == nil {
		return ""
	}
	if e, ok := errors.AsType[*Error](err); ok {
		return e.Message
	}
	return err.Error()
}
