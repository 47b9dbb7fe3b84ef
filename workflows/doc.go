// Package workflows holds Gosling's deterministic Temporal workflows:
// provisioning and teardown of runners, each egg's Apex/Nadir pool, token
// rotation, and UglyFox's policy and reconciliation passes. Their contract
// (names, IDs, inputs and results) lives in package contract, which callers
// import instead of this package; package worker registers these functions
// under the contract's names.
package workflows
