package fly

import (
	"time"

	"github.com/hashicorp/hcl/v2"
)

var uglyfoxSchema = &hcl.BodySchema{
	Attributes: []hcl.AttributeSchema{{Name: "schedule"}, {Name: "dry_run"}},
	Blocks: []hcl.BlockHeaderSchema{
		{Type: "failed"}, {Type: "old"}, {Type: "idle"}, {Type: "heartbeat"}, {Type: "reconcile"}, {Type: "audit"},
	},
}

// DefaultUglyFox is the pruning configuration of a Nest without UF/config.fly.
func DefaultUglyFox() UglyFox {
	const h = Duration(time.Hour)
	return UglyFox{
		Schedule:  "*/5 * * * *",
		Failed:    FailedPolicy{Threshold: 3, Window: h, Action: ActionTerminate},
		Old:       OldPolicy{MaxAge: 72 * h, NadirMaxAge: 168 * h, Action: ActionRecycle},
		Idle:      IdlePolicy{Apex: Duration(30 * time.Minute), Nadir: 168 * h, Action: ActionDemote},
		Heartbeat: HeartbeatPolicy{Timeout: Duration(5 * time.Minute), Action: ActionTerminate},
		Reconcile: ReconcilePolicy{Schedule: "*/15 * * * *", Action: ActionReap},
		Audit:     AuditPolicy{Retention: 90 * 24 * h},
	}
}

func (l *loader) decodeUglyFoxBlock(b *hcl.Block) (UglyFox, hcl.Diagnostics) {
	content, diags := b.Body.Content(uglyfoxSchema)
	def := DefaultUglyFox()
	a := newAttrs(l.ctx, content.Attributes, &diags)
	uf := UglyFox{DryRun: a.boolean("dry_run", false)}
	uf.Schedule, _ = a.cron("schedule", def.Schedule)
	blocks := singleBlocks(content.Blocks, &diags)
	const (
		minute = Duration(time.Minute)
		day    = Duration(24 * time.Hour)
	)
	policy := func(name string, schema *hcl.BodySchema) *attrs {
		body := &hcl.BodyContent{Attributes: hcl.Attributes{}}
		if pb := blocks[name]; pb != nil {
			c, d := pb.Body.Content(schema)
			diags = append(diags, d...)
			body = c
		}
		return newAttrs(l.ctx, body.Attributes, &diags)
	}

	p := policy("failed", attrSchema("threshold", "window", "action"))
	uf.Failed = FailedPolicy{
		Threshold: p.integer("threshold", def.Failed.Threshold, 1, 100),
		Window:    p.duration("window", def.Failed.Window, minute, 30*day),
		Action:    p.enum("action", def.Failed.Action, ActionTerminate, ActionNotify, ActionIgnore),
	}
	p = policy("old", attrSchema("max_age", "nadir_max_age", "action"))
	uf.Old = OldPolicy{
		MaxAge:      p.duration("max_age", def.Old.MaxAge, 10*minute, 365*day),
		NadirMaxAge: p.duration("nadir_max_age", def.Old.NadirMaxAge, 10*minute, 365*day),
		Action:      p.enum("action", def.Old.Action, ActionRecycle, ActionTerminate, ActionNotify, ActionIgnore),
	}
	p = policy("idle", attrSchema("apex", "nadir", "action"))
	uf.Idle = IdlePolicy{
		Apex:   p.duration("apex", def.Idle.Apex, minute, 30*day),
		Nadir:  p.duration("nadir", def.Idle.Nadir, minute, 365*day),
		Action: p.enum("action", def.Idle.Action, ActionDemote, ActionTerminate, ActionNotify, ActionIgnore),
	}
	p = policy("heartbeat", attrSchema("timeout", "action"))
	uf.Heartbeat = HeartbeatPolicy{
		Timeout: p.duration("timeout", def.Heartbeat.Timeout, Duration(30*time.Second), day),
		Action:  p.enum("action", def.Heartbeat.Action, ActionTerminate, ActionNotify, ActionIgnore),
	}
	p = policy("reconcile", attrSchema("schedule", "action"))
	uf.Reconcile.Schedule, _ = p.cron("schedule", def.Reconcile.Schedule)
	uf.Reconcile.Action = p.enum("action", def.Reconcile.Action, ActionReap, ActionReport)
	p = policy("audit", attrSchema("retention"))
	uf.Audit = AuditPolicy{Retention: p.duration("retention", def.Audit.Retention, day, 10*365*day)}
	return uf, diags
}

// attrSchema is a schema of optional attributes and no blocks.
func attrSchema(names ...string) *hcl.BodySchema {
	s := &hcl.BodySchema{}
	for _, n := range names {
		s.Attributes = append(s.Attributes, hcl.AttributeSchema{Name: n})
	}
	return s
}
