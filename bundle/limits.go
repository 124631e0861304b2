package bundle

import (
	"errors"
	"fmt"
)

// ErrLimit: what was asked for passes one of the format's limits
// (section 7 of docs/bundle-format.md) or one a TUF client sets. Writers
// check each limit before the work it bounds, so nothing is fetched or
// signed that a reader would refuse.
var ErrLimit = errors.New("over a limit of the bundle format")

// LimitError names the limit passed and the way around it.
type LimitError struct {
	What   string // what is counted: "images in one bundle"
	Have   int64
	Limit  int64
	Around string // what to do instead, in words (the CLI adds flags)
}

func (e *LimitError) Error() string {
	return fmt.Sprintf("%d %s is over the limit of %d: %s", e.Have, e.What, e.Limit, e.Around)
}

// Is makes errors.Is(err, ErrLimit) hold for every LimitError.
func (e *LimitError) Is(target error) bool { return target == ErrLimit }

// CheckLimit returns a *LimitError when have passes limit.
func CheckLimit(what string, have, limit int64, around string) error {
	if have > limit {
		return &LimitError{What: what, Have: have, Limit: limit, Around: around}
	}
	return nil
}
