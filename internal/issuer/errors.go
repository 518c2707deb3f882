package issuer

import (
	"errors"
	"fmt"
	"time"
)

// Class sorts issuer errors by what the caller should do about them.
type Class string

const (
	// ClassTransient means: retry with backoff (5xx, network errors before sending, 429/503).
	ClassTransient Class = "Transient"
	// ClassDeadChain means: the refresh chain (or the grant's input) is dead for good
	// (invalid_grant, Keycloak "Token is not active", FOLIO 422 ...): re-mint with the
	// grant where it allows, otherwise the credentials are lost.
	ClassDeadChain Class = "DeadChain"
	// ClassConfiguration means: the issuer or client is misconfigured (invalid_client,
	// unauthorized_client, unsupported_grant_type, bad discovery, issuer mismatch).
	// Retrying does not help until the spec or the Secret changes.
	ClassConfiguration Class = "Configuration"
	// ClassOutcomeUnknown means: the request may have reached the issuer and been acted on
	// (timeout after sending, connection reset while reading the answer). A refresh
	// with this outcome must never be replayed.
	ClassOutcomeUnknown Class = "OutcomeUnknown"
)

// Error is the only error type Client methods return. It never holds token bytes.
type Error struct {
	Class Class
	// Op is the operation: "discovery", "mint", "refresh", "revoke", "jwks".
	Op string
	// StatusCode is the HTTP status, 0 when no response was read.
	StatusCode int
	// Code and Description are the issuer's error and error_description (or the
	// FOLIO message), trimmed and stripped of anything that looks like a token.
	Code        string
	Description string
	// RetryAfter is the issuer's Retry-After, zero when absent.
	RetryAfter time.Duration
	// Err is the underlying cause (network error), already free of token bytes.
	Err error
}

func (e *Error) Error() string {
	msg := fmt.Sprintf("issuer %s: %s", e.Op, e.Class)
	if e.StatusCode != 0 {
		msg += fmt.Sprintf(" (HTTP %d)", e.StatusCode)
	}
	if e.Code != "" {
		msg += ": " + e.Code
	}
	if e.Description != "" {
		msg += ": " + e.Description
	}
	if e.Err != nil {
		msg += ": " + e.Err.Error()
	}
	if e.RetryAfter > 0 {
		msg += fmt.Sprintf(" (retry after %s)", e.RetryAfter)
	}
	return msg
}

func (e *Error) Unwrap() error { return e.Err }

// ClassOf returns the class of err, or ClassTransient for an error that is not an *Error
// (an unknown failure is retried, never treated as final).
func ClassOf(err error) Class {
	var ie *Error
	if errors.As(err, &ie) {
		return ie.Class
	}
	return ClassTransient
}

// RetryAfterOf returns the issuer's Retry-After hint carried by err, or zero.
func RetryAfterOf(err error) time.Duration {
	var ie *Error
	if errors.As(err, &ie) {
		return ie.RetryAfter
	}
	return 0
}
