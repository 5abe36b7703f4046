package auth

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"time"
)

// refreshLoop fetches JWKSURL: at once, then every JWKSRefresh; after a
// failure sooner, with doubling backoff; early when Verify saw an unknown
// kid (at most once per JWKSMinRefresh) or Reload asks. It runs on its own
// goroutine until Close.
func (v *Verifier) refreshLoop() {
	defer close(v.done)
	var (
		validators http.Header // ETag / Last-Modified of the keys in use
		lastFetch  time.Time
		retry      = firstRetry
		timer      = time.NewTimer(0)
		nextAt     = time.Now()
	)
	defer timer.Stop()
	for {
		select {
		case <-v.ctx.Done():
			return
		case <-timer.C:
		case <-v.force:
		case <-v.poke:
			early := lastFetch.Add(v.cfg.JWKSMinRefresh)
			if time.Now().Before(early) {
				if early.Before(nextAt) {
					nextAt = early
					timer.Reset(time.Until(early))
				}
				continue
			}
		}
		lastFetch = time.Now()
		next, err := v.fetch(validators)
		delay := v.cfg.JWKSRefresh
		if err != nil {
			delay = min(retry, v.cfg.JWKSRefresh, maxRetry)
			retry *= 2
		} else {
			validators = next
			retry = firstRetry
		}
		nextAt = time.Now().Add(delay)
		timer.Reset(delay)
	}
}

// fetch gets the JWKS document once. On success it installs the keys (or
// keeps them on 304 Not Modified) and returns the validators for the next
// conditional request; on failure the keys in use stay.
func (v *Verifier) fetch(validators http.Header) (http.Header, error) {
	keys, next, notModified, err := v.get(validators)
	v.mu.Lock()
	v.status.URLFetches++
	if err != nil {
		v.status.URLFailures++
		v.status.URLError = err
		v.mu.Unlock()
		if !errors.Is(err, context.Canceled) {
			v.cfg.Logger.Warn("auth: JWKS fetch failed, keeping the old keys", "url", v.cfg.JWKSURL, "err", err)
		}
		return nil, err
	}
	v.status.URLError = nil
	v.status.URLFetchedAt = time.Now()
	if !notModified {
		v.urlKeys = keys
		v.installLocked()
	}
	v.mu.Unlock()
	if !notModified {
		v.cfg.Logger.Info("auth: JWKS fetched", "url", v.cfg.JWKSURL, "keys", len(keys))
	}
	v.readyOnce.Do(func() { close(v.ready) })
	return next, nil
}

func (v *Verifier) get(validators http.Header) (keys []verifyKey, next http.Header, notModified bool, err error) {
	ctx, cancel := context.WithTimeout(v.ctx, v.cfg.JWKSFetchTimeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, v.cfg.JWKSURL, nil)
	if err != nil {
		return nil, nil, false, fmt.Errorf("auth: JWKS request: %w", err)
	}
	req.Header.Set("Accept", "application/jwk-set+json, application/json")
	if etag := validators.Get("ETag"); etag != "" {
		req.Header.Set("If-None-Match", etag)
	}
	if lm := validators.Get("Last-Modified"); lm != "" {
		req.Header.Set("If-Modified-Since", lm)
	}
	resp, err := v.client.Do(req)
	if err != nil {
		return nil, nil, false, fmt.Errorf("auth: JWKS fetch: %w", err)
	}
	defer resp.Body.Close()
	switch {
	case resp.StatusCode == http.StatusNotModified && validators != nil:
		_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 4096))
		return nil, validators, true, nil
	case resp.StatusCode != http.StatusOK:
		return nil, nil, false, fmt.Errorf("auth: JWKS fetch: HTTP status %d", resp.StatusCode)
	}
	data, err := io.ReadAll(io.LimitReader(resp.Body, MaxJWKSBytes+1))
	if err != nil {
		return nil, nil, false, fmt.Errorf("auth: JWKS fetch: reading body: %w", err)
	}
	if keys, err = parseJWKS(data, false); err != nil {
		return nil, nil, false, fmt.Errorf("auth: JWKS document: %w", err)
	}
	next = http.Header{}
	for _, h := range []string{"ETag", "Last-Modified"} {
		if val := resp.Header.Get(h); val != "" {
			next.Set(h, val)
		}
	}
	return keys, next, false, nil
}
