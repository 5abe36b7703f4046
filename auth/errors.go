package auth

import (
	"errors"
	"fmt"
)

// ErrUnauthorized matches (errors.Is) every *Error of this package: the
// token, or what it was asked to allow, was refused.
var ErrUnauthorized = errors.New("auth: unauthorized")

// Reason is why a token was refused: one of the closed set returned by
// Reasons, stable and fit for a Prometheus label value.
type Reason string

// The reasons, in the order Reasons lists them. The package documentation
// explains each; that list and this one are kept equal by a test.
const (
	// Verify: the token itself.
	ReasonMissing             Reason = "missing"
	ReasonMalformed           Reason = "malformed"
	ReasonAlgorithmNotAllowed Reason = "algorithm_not_allowed"
	ReasonUnknownKey          Reason = "unknown_key"
	ReasonBadSignature        Reason = "bad_signature"
	ReasonMissingClaim        Reason = "missing_claim"
	ReasonInvalidClaim        Reason = "invalid_claim"
	ReasonExpired             Reason = "expired"
	ReasonNotYetValid         Reason = "not_yet_valid"
	ReasonWrongAudience       Reason = "wrong_audience"
	ReasonWrongIssuer         Reason = "wrong_issuer"
	// Claims methods: what a valid token allows.
	ReasonRoomNotAllowed   Reason = "room_not_allowed"
	ReasonCreateNotAllowed Reason = "create_not_allowed"
	ReasonOptionNotAllowed Reason = "option_not_allowed"
)

// Reasons returns every Reason, for pre-declaring metric label values. The
// slice is the caller's.
func Reasons() []Reason {
	return []Reason{
		ReasonMissing, ReasonMalformed, ReasonAlgorithmNotAllowed, ReasonUnknownKey,
		ReasonBadSignature, ReasonMissingClaim, ReasonInvalidClaim, ReasonExpired,
		ReasonNotYetValid, ReasonWrongAudience, ReasonWrongIssuer,
		ReasonRoomNotAllowed, ReasonCreateNotAllowed, ReasonOptionNotAllowed,
	}
}

// Error is a refusal: a machine-readable Reason and a Detail for logs. The
// detail never contains the token or key material, but may quote
// attacker-chosen header values (kid), shortened.
type Error struct {
	Reason Reason
	Detail string
	cause  error
}

func (e *Error) Error() string {
	if e.Detail == "" {
		return "auth: " + string(e.Reason)
	}
	return "auth: " + string(e.Reason) + ": " + e.Detail
}

// Is makes errors.Is(err, ErrUnauthorized) true.
func (e *Error) Is(target error) bool { return target == ErrUnauthorized }

// Unwrap returns the underlying error (from the JWT library), if any.
func (e *Error) Unwrap() error { return e.cause }

// ReasonOf returns the Reason of an *Error in err's chain, or "" when err
// is nil or not a refusal of this package.
func ReasonOf(err error) Reason {
	var e *Error
	if errors.As(err, &e) {
		return e.Reason
	}
	return ""
}

func refuse(r Reason, format string, args ...any) *Error {
	return &Error{Reason: r, Detail: fmt.Sprintf(format, args...)}
}

// quote shortens an attacker-chosen string for an error detail.
func quote(s string) string {
	const max = 64
	if len(s) > max {
		return fmt.Sprintf("%q...", s[:max])
	}
	return fmt.Sprintf("%q", s)
}
