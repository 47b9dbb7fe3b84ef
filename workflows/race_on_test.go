//go:build race

package workflows

// raceDetector is true in a -race build.
const raceDetector = true
