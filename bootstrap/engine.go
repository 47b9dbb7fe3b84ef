package bootstrap

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"time"
)

// Provider reads and changes the resources of some types in one cloud (or
// GitLab). Its methods get resources with references resolved.
type Provider interface {
	// Types lists the resource types it handles, in the order they are
	// made (a type may refer only to earlier ones).
	Types() []string
	// Read returns the deployment's existing resources of its types, found
	// by tag, label, path or name, with Props in the shape the desired set
	// uses. hints (the desired set and what the journal says earlier
	// deploys made) help find them where the cloud cannot list by tag:
	// a webhook is read from its project, a queue by its name.
	Read(ctx context.Context, hints []Resource) ([]Resource, error)
	// Create makes r and returns it with ID and Outputs.
	Create(ctx context.Context, r Resource) (Resource, error)
	// Update changes before into after and returns after with ID and
	// Outputs.
	Update(ctx context.Context, before, after Resource) (Resource, error)
	// Delete removes r.
	Delete(ctx context.Context, r Resource) error
}

// Engine plans, applies and rolls back one deployment.
type Engine struct {
	Deployment string
	Cloud      string
	Providers  []Provider
	Journal    Journal
	Log        *slog.Logger
	// Now is the clock of journal entries (default time.Now).
	Now func() time.Time
}

func (e *Engine) log() *slog.Logger {
	if e.Log == nil {
		return slog.New(slog.DiscardHandler)
	}
	return e.Log
}

func (e *Engine) now() time.Time {
	if e.Now == nil {
		return time.Now()
	}
	return e.Now()
}

func (e *Engine) typeOrder() []string {
	var out []string
	for _, p := range e.Providers {
		out = append(out, p.Types()...)
	}
	return out
}

func (e *Engine) provider(typ string) (Provider, error) {
	for _, p := range e.Providers {
		if slices.Contains(p.Types(), typ) {
			return p, nil
		}
	}
	return nil, fmt.Errorf("no provider handles resources of type %s", typ)
}

// Read returns every existing resource of the deployment.
func (e *Engine) Read(ctx context.Context, hints []Resource) ([]Resource, error) {
	var out []Resource
	for _, p := range e.Providers {
		got, err := p.Read(ctx, hints)
		if err != nil {
			return nil, err
		}
		out = append(out, got...)
	}
	return out, nil
}

// Plan reads what exists and diffs it against desired.
func (e *Engine) Plan(ctx context.Context, desired []Resource) (*Plan, []Resource, error) {
	for _, d := range desired {
		if _, err := e.provider(d.Type); err != nil {
			return nil, nil, err
		}
	}
	// What earlier deploys made tells the providers where to look for
	// resources that have since left the Nest.
	hints := slices.Clone(desired)
	entries, err := e.Journal.Entries(ctx)
	if err != nil {
		return nil, nil, err
	}
	for _, en := range entries {
		for _, c := range en.Changes {
			if c.After != nil {
				hints = append(hints, *c.After)
			}
		}
	}
	actual, err := e.Read(ctx, hints)
	if err != nil {
		return nil, nil, err
	}
	p, err := Diff(desired, actual, e.typeOrder())
	if err != nil {
		return nil, nil, err
	}
	p.Deployment, p.Cloud = e.Deployment, e.Cloud
	return p, actual, nil
}

// ApplyOptions change how Apply treats a failure.
type ApplyOptions struct {
	// KeepPartial keeps the changes made before a failed step instead of
	// undoing them.
	KeepPartial bool
	// Progress, when set, is told of each step as it starts.
	Progress func(c Change)
	// ForceUnlock goes ahead although the journal says another deploy is
	// running (one that died without finishing).
	ForceUnlock bool
}

// LockedError is a deploy refused because another one is running.
type LockedError struct{ Entry Entry }

func (e *LockedError) Error() string {
	return fmt.Sprintf("another %s has been changing this deployment since %s (journal entry %d): wait for it; if it died, pass --force-unlock, or wait until %s",
		e.Entry.Kind, e.Entry.Time.Format(time.RFC3339), e.Entry.ID, e.Entry.Time.Add(LockTimeout).Format(time.RFC3339))
}

// ApplyError is a deploy that stopped part-way.
type ApplyError struct {
	// Address is the resource whose change failed.
	Address string
	Err     error
	// Undone tells whether the changes before it were undone; UndoErr is
	// why undoing them failed, if it did.
	Undone  bool
	UndoErr error
	Entry   Entry
}

func (e *ApplyError) Error() string {
	msg := fmt.Sprintf("%s: %v", e.Address, e.Err)
	switch {
	case e.UndoErr != nil:
		msg += fmt.Sprintf("; undoing the changes before it failed too: %v (journal entry %d lists them)", e.UndoErr, e.Entry.ID)
	case e.Undone:
		msg += fmt.Sprintf("; the %d changes before it were undone", len(e.Entry.Changes))
	default:
		msg += fmt.Sprintf("; the %d changes before it were kept (journal entry %d)", len(e.Entry.Changes), e.Entry.ID)
	}
	return msg
}

func (e *ApplyError) Unwrap() error { return e.Err }

// Apply carries the plan out in its order and journals it. actual is what
// Plan read (its outputs resolve references). On a failure the changes
// made so far are undone in reverse order unless o.KeepPartial; either way
// the entry is journaled, and the error is an *ApplyError.
func (e *Engine) Apply(ctx context.Context, p *Plan, actual []Resource, o ApplyOptions) (Entry, error) {
	return e.apply(ctx, p, actual, o, KindDeploy, 0)
}

func (e *Engine) apply(ctx context.Context, p *Plan, actual []Resource, o ApplyOptions, kind string, to int) (Entry, error) {
	entry := Entry{Time: e.now().UTC(), Kind: kind, To: to, Status: StatusApplied, Changes: []JournalChange{}}
	if p.Empty() {
		return entry, nil
	}
	entries, err := e.Journal.Entries(ctx)
	if err != nil {
		return entry, err
	}
	entry.ID = 1
	if n := len(entries); n > 0 {
		last := entries[n-1]
		if last.Status == StatusRunning && !o.ForceUnlock && e.now().Sub(last.Time) < LockTimeout {
			return entry, &LockedError{Entry: last}
		}
		entry.ID = last.ID + 1
		if last.Status == StatusRunning {
			entry.ID = last.ID // the dead deploy's entry is replaced
		}
	}
	// The running entry is the advisory lock; the final one replaces it.
	running := entry
	running.Status = StatusRunning
	if err := e.Journal.Append(ctx, running); err != nil {
		return entry, fmt.Errorf("lock the deployment in its journal: %w", err)
	}
	outs := Outputs{}
	for _, a := range actual {
		outs[a.Address()] = a.Outputs
	}
	renamed := map[string]string{}
	for _, c := range p.Changes {
		if c.Action == Retain {
			continue
		}
		if o.Progress != nil {
			o.Progress(c)
		}
		jc, err := e.step(ctx, c, outs, renamed)
		if err != nil {
			return e.fail(ctx, entry, c.Address, err, o.KeepPartial)
		}
		entry.Changes = append(entry.Changes, jc)
	}
	if err := e.Journal.Append(ctx, entry); err != nil {
		return entry, fmt.Errorf("the deploy was applied but not journaled, so it cannot be rolled back: %w", err)
	}
	return entry, nil
}

// step makes one change, resolving references from outs and recording the
// outputs it produces. A resource made again (a rollback of its deletion)
// gets new IDs: renamed maps each old output value to its new one, and
// the later steps' props, which the journal holds resolved, take the new
// values (a trigger made again points at the container made again).
func (e *Engine) step(ctx context.Context, c Change, outs Outputs, renamed map[string]string) (JournalChange, error) {
	jc := JournalChange{Action: c.Action, Address: c.Address}
	var typ string
	if c.After != nil {
		typ = c.After.Type
	} else {
		typ = c.Before.Type
	}
	prov, err := e.provider(typ)
	if err != nil {
		return jc, err
	}
	var after Resource
	if c.After != nil {
		want := c.desired
		if want == nil {
			want = c.After
		}
		var ok bool
		if after, ok = outs.resolveResource(*want); !ok {
			return jc, fmt.Errorf("a reference of %s is still unknown: a resource it refers to was not made first", c.Address)
		}
		after.Props = fromComparable(after.Type, rename(Comparable(after.Props), renamed).(map[string]any))
	}
	e.log().Info("apply", "action", c.Action, "resource", c.Address)
	switch c.Action {
	case Create:
		made, err := prov.Create(ctx, after)
		if err != nil {
			return jc, err
		}
		for k, old := range c.After.Outputs {
			if v := made.Outputs[k]; old != "" && v != "" && v != old {
				renamed[old] = v
			}
		}
		outs[c.Address] = made.Outputs
		jc.After = &made
	case Update:
		made, err := prov.Update(ctx, *c.Before, after)
		if err != nil {
			return jc, err
		}
		outs[c.Address] = made.Outputs
		before := *c.Before
		jc.Before, jc.After = &before, &made
	case Delete:
		if err := prov.Delete(ctx, *c.Before); err != nil {
			return jc, err
		}
		delete(outs, c.Address)
		before := *c.Before
		jc.Before = &before
	}
	return jc, nil
}

// rename replaces, in every string of v, the old values of renamed with
// their new ones.
func rename(v any, renamed map[string]string) any {
	if len(renamed) == 0 {
		return v
	}
	switch x := v.(type) {
	case string:
		for old, nu := range renamed {
			x = strings.ReplaceAll(x, old, nu)
		}
		return x
	case []any:
		out := make([]any, len(x))
		for i, e := range x {
			out[i] = rename(e, renamed)
		}
		return out
	case map[string]any:
		out := make(map[string]any, len(x))
		for k, e := range x {
			out[k] = rename(e, renamed)
		}
		return out
	}
	return v
}

// fail undoes the entry's changes (unless keep) and journals it.
func (e *Engine) fail(ctx context.Context, entry Entry, addr string, cause error, keep bool) (Entry, error) {
	entry.Error = fmt.Sprintf("%s: %v", addr, cause)
	ae := &ApplyError{Address: addr, Err: cause}
	if keep {
		entry.Status = StatusPartial
	} else {
		ae.UndoErr = e.undo(ctx, entry.Changes)
		ae.Undone = ae.UndoErr == nil
		entry.Status = StatusUndone
		if ae.UndoErr != nil {
			entry.Status = StatusPartial
			entry.Error += "; undo: " + ae.UndoErr.Error()
		}
	}
	// Journal it even when undone (the audit trail shows what happened);
	// it also replaces the running entry, which frees the deployment.
	if err := e.Journal.Append(ctx, entry); err != nil {
		ae.UndoErr = errors.Join(ae.UndoErr, fmt.Errorf("journal: %w", err))
	}
	ae.Entry = entry
	return entry, ae
}

// undo reverses changes, newest first: a create is deleted, an update
// changed back, a delete made again.
func (e *Engine) undo(ctx context.Context, changes []JournalChange) error {
	var errs []error
	for _, c := range slices.Backward(changes) {
		var typ string
		if c.After != nil {
			typ = c.After.Type
		} else {
			typ = c.Before.Type
		}
		prov, err := e.provider(typ)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		e.log().Info("undo", "action", c.Action, "resource", c.Address)
		switch c.Action {
		case Create:
			if c.After.Retain {
				// Retained resources (secrets, the store's table) are never
				// deleted by gosling, not even when a deploy that made them
				// fails.
				e.log().Warn("kept a retained resource the failed deploy made", "resource", c.Address)
				continue
			}
			err = prov.Delete(ctx, *c.After)
		case Update:
			_, err = prov.Update(ctx, *c.After, *c.Before)
		case Delete:
			_, err = prov.Create(ctx, *c.Before)
		}
		if err != nil {
			errs = append(errs, fmt.Errorf("undo %s of %s: %w", c.Action, c.Address, err))
		}
	}
	return errors.Join(errs...)
}

// counts tells whether an entry changed anything that stayed changed.
func counts(en Entry) bool { return en.Status != StatusUndone && len(en.Changes) > 0 }

// PreviousEntry is the entry `gosling rollback` returns to by default: the
// one before the newest entry that changed something (0, before the first
// deploy, when there is none).
func PreviousEntry(entries []Entry) (int, error) {
	var live []Entry
	for _, en := range entries {
		if counts(en) {
			live = append(live, en)
		}
	}
	switch len(live) {
	case 0:
		return 0, errors.New("the journal has no deploy to roll back")
	case 1:
		return 0, nil
	}
	return live[len(live)-2].ID, nil
}

// RollbackPlan plans the return to the state right after entry to (0: before
// the first journaled deploy): every resource a later entry changed gets
// back the value it had before the oldest of those changes. Resources no
// later entry touched are left alone.
func (e *Engine) RollbackPlan(ctx context.Context, to int) (*Plan, []Resource, error) {
	entries, err := e.Journal.Entries(ctx)
	if err != nil {
		return nil, nil, err
	}
	if to != 0 && !slices.ContainsFunc(entries, func(en Entry) bool { return en.ID == to }) {
		var ids []string
		for _, en := range entries {
			ids = append(ids, fmt.Sprint(en.ID))
		}
		return nil, nil, fmt.Errorf("journal entry %d not found in %s; it holds %s", to, e.Journal.Where(), strings.Join(ids, ", "))
	}
	target := map[string]*Resource{}
	var touched []string
	var hints []Resource
	for _, en := range slices.Backward(entries) {
		if en.ID <= to || !counts(en) {
			continue
		}
		for _, c := range slices.Backward(en.Changes) {
			if _, seen := target[c.Address]; !seen {
				touched = append(touched, c.Address)
			}
			target[c.Address] = c.Before
			for _, r := range []*Resource{c.Before, c.After} {
				if r != nil {
					hints = append(hints, *r)
				}
			}
		}
	}
	if len(touched) == 0 {
		p := &Plan{Deployment: e.Deployment, Cloud: e.Cloud}
		return p, nil, nil
	}
	var desired []Resource
	for _, addr := range touched {
		if r := target[addr]; r != nil {
			desired = append(desired, r.clone())
		}
	}
	all, err := e.Read(ctx, hints)
	if err != nil {
		return nil, nil, err
	}
	var actual []Resource
	for _, a := range all {
		if _, ok := target[a.Address()]; ok {
			actual = append(actual, a)
		}
	}
	p, err := Diff(desired, actual, e.typeOrder())
	if err != nil {
		return nil, nil, err
	}
	p.Deployment, p.Cloud = e.Deployment, e.Cloud
	// The outputs of every read resource resolve references, not only the
	// rolled-back ones'.
	return p, all, nil
}

// Rollback applies a RollbackPlan and journals it as a rollback entry.
func (e *Engine) Rollback(ctx context.Context, p *Plan, actual []Resource, to int, o ApplyOptions) (Entry, error) {
	return e.apply(ctx, p, actual, o, KindRollback, to)
}
