// Package workflows holds Gosling's deterministic Temporal workflows:
// provisioning and teardown of runners (falling back to an egg's next
// cloud when one refuses for capacity or quota), each VM egg's Apex/Nadir
// pool (warmed ahead of announced jobs), each serverless egg's gate
// (max_concurrent runners at once, the rest waiting in order; see Gate for
// why it is not the Pool workflow), token rotation, and UglyFox's policy
// and reconciliation passes. Their contract
// (names, IDs, inputs and results) lives in package contract, which callers
// import instead of this package; package worker registers these functions
// under the contract's names.
package workflows
