package room

import "time"

// systemClock is the Clock used when Config.Clock is nil.
type systemClock struct{}

func (systemClock) Now() time.Time { return time.Now() }

func (systemClock) NewTimer(d time.Duration) Timer { return sysTimer{time.NewTimer(d)} }

// sysTimer adapts *time.Timer. Since Go 1.23 (this module's go line is
// later) Reset and Stop discard a pending fire, as Timer.Reset requires.
type sysTimer struct{ t *time.Timer }

func (t sysTimer) C() <-chan time.Time   { return t.t.C }
func (t sysTimer) Reset(d time.Duration) { t.t.Reset(d) }
func (t sysTimer) Stop()                 { t.t.Stop() }
