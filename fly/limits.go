package fly

import "time"

// ServerlessLimits are the limits of one cloud's serverless runners.
type ServerlessLimits struct {
	// Service names the cloud service that runs serverless runners.
	Service string
	CPU     float64
	Memory  Size
	// MaxRun is how long one serverless runner may live.
	MaxRun time.Duration
}

// MaxServerlessRun is Gosling's own limit on a serverless runner's life.
const MaxServerlessRun = 60 * time.Minute

// ServerlessLimitsFor returns the serverless limits of a cloud. On AWS,
// Fargate takes jobs up to the 60-minute limit (Lambda stops at 15 minutes).
func ServerlessLimitsFor(cloud string) (ServerlessLimits, bool) {
	switch cloud {
	case CloudYandex:
		return ServerlessLimits{Service: "Serverless Containers", CPU: 4, Memory: 8 * GiB, MaxRun: MaxServerlessRun}, true
	case CloudAWS:
		return ServerlessLimits{Service: "ECS Fargate", CPU: 16, Memory: 120 * GiB, MaxRun: MaxServerlessRun}, true
	case CloudLocal:
		return ServerlessLimits{Service: "local processes", CPU: 64, Memory: 256 * GiB, MaxRun: MaxServerlessRun}, true
	}
	return ServerlessLimits{}, false
}

// LambdaMaxRun is AWS Lambda's hard limit on one invocation.
const LambdaMaxRun = 15 * time.Minute
