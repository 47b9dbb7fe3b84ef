package agent

import "time"

// heartbeatTimeout bounds one post to MotherGoose's agent endpoints
// (heartbeat, job report): a slow API never holds the agent up. A missed
// beat is logged; UglyFox only acts on silence longer than its heartbeat
// timeout.
const heartbeatTimeout = 5 * time.Second
