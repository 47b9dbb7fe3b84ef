// Package store keeps Gosling's durable view of the world: runners and their
// lifecycle, egg configurations, job history, pruning policies, the audit
// log, and the API's webhook deliveries and outbox. One interface, several
// engines: SQLite (the embedded default), PostgreSQL, DynamoDB, and YDB
// through its DynamoDB-compatible Document API; every engine passes the
// same contract tests (storetest). Open picks the engine from a DSN, and
// DSNFromDatabase makes that DSN from MG/config.fly's database block.
//
// # DynamoDB
//
// The DynamoDB engine keeps everything in one table, TABLE_PREFIX-store,
// made on open when missing (CreateTable, on-demand capacity, then the
// TableExists waiter). Its key is pk (partition, string) and sk (sort,
// string); each kind of record lives in partitions of its own:
//
//	record              pk                   sk                        other attributes
//	layout version      meta                 schema                    version
//	ID counters         counter              audit | outbox            n
//	runner              runner               runner ID                 the Runner fields, version,
//	                                                                   transitions (count), last_transition
//	transition          history#RUNNER_ID    sequence (20 digits)      from, to, reason, actor, at
//	egg config          egg                  name                      version, spec, updated_at
//	policy              policy               name                      version, spec, updated_at
//	job                 job                  JOB_ID#GITLAB_HOST        the JobRecord fields
//	audit record        audit                ID (20 digits)            the AuditRecord fields, dedupe_key
//	audit dedupe key    audit-key            key                       id
//	webhook delivery    delivery             delivery key              received_at
//	pending outbox      outbox               ID (20 digits)            the OutboxEntry fields
//	delivered outbox    outbox-done          ID (20 digits)            the same and delivered_at
//
// Job IDs in keys are shifted to unsigned 20-digit numbers so any int64
// sorts. Times are UTC strings with microseconds (2006-01-02T15:04:05.000000Z),
// which sort as text in time order; a nil time is an absent attribute;
// JSON documents are strings, kept byte for byte.
//
// Access patterns, all strongly consistent:
//
//	GetRunner, GetEggConfig, GetJob         GetItem
//	CreateRunner, RecordDelivery            PutItem if attribute_not_exists(pk)
//	UpdateRunner, Transition                UpdateItem if version = the version read
//	RecordHeartbeat, MarkOutboxFailed       UpdateItem if attribute_exists(pk)
//	RecordJob                               UpdateItem; zero fields if_not_exists (kept)
//	ListRunners, CountRunners               Query pk=runner, sk > after, FilterExpression
//	RunnerHistory                           GetItem runner, Query pk=history#ID, sk < last
//	ListEggConfigs, ListPolicies            Query pk=egg | policy
//	ListJobs                                Query pk=job backwards, sk < before, filter
//	                                        (egg, status, runner, finished since)
//	AppendAudit                             UpdateItem ADD on counter/audit, PutItem
//	                                        (with a key: PutItem if new on audit-key first)
//	ListAudit                               Query pk=audit, sk > after, filter on egg, runner, at
//	ExpireAudit, PruneDeliveries,           Query with a time filter, then DeleteItem
//	PruneOutbox                             each, conditional on the time
//	EnqueueOutbox                           UpdateItem ADD on counter/outbox, PutItem
//	DueOutbox, OutboxDepth, OutboxPending   Query pk=outbox (pending entries only)
//	MarkOutboxDelivered                     GetItem, PutItem to outbox-done, DeleteItem
//
// DynamoDB applies a Query's Limit before its filter, so filtered lists read
// pages (following LastEvaluatedKey) until they have their limit.
//
// No operation needs a transaction across items: every change that must be
// atomic is a conditional write of one item, which DynamoDB, the YDB
// Document API and dynalite (the test server, which has no
// TransactWriteItems) all make atomic, so the tests run the code production
// runs. A transition's record is written inside its runner's item
// (last_transition) by the same conditional update that moves the state,
// and copied to its own item (history#) before the next transition replaces
// it; RunnerHistory reads the runner first and appends its last transition
// to the copies numbered below it, so a failure between the two writes
// loses nothing. A keyed audit record claims its key with a conditional put
// before the record is written; a retry that finds the key returns the ID
// stored there (and writes the record under it if the first writer stopped
// in between). Audit and outbox IDs come from counters, so they increase,
// but as with PostgreSQL's identity columns a lower ID may become visible
// after a higher one. A delivered outbox entry is copied to outbox-done and
// then deleted from outbox, so the partition read on every webhook
// (OutboxPending) holds only pending entries; a failure between the two
// leaves the entry pending and it is delivered again, at least once.
//
// Each kind's records share a partition key, and one partition serves about
// 1,000 writes and 3,000 reads a second; Gosling's rates (runner changes,
// webhooks, audit appends) are far below that.
//
// # IAM permissions
//
// The least set, on arn:aws:dynamodb:REGION:ACCOUNT:table/TABLE_PREFIX-store:
//
//	dynamodb:DescribeTable   on open, and while waiting for a new table
//	dynamodb:CreateTable     only when the table does not exist yet
//	dynamodb:GetItem, dynamodb:PutItem, dynamodb:UpdateItem,
//	dynamodb:DeleteItem, dynamodb:Query
//
// A refused call says "permission denied" and names this set.
//
// # YDB Document API
//
// Yandex's serverless YDB serves a DynamoDB-compatible Document API
// (https://yandex.cloud/en/docs/ydb/docapi/api-ref). The ydb engine is the
// DynamoDB engine pointed at the database's Document API endpoint
// (https://docapi.serverless.yandexcloud.net/ru-central1/CLOUD_ID/DATABASE_ID),
// with Yandex authentication: by default every request carries
// "Authorization: Bearer IAM_TOKEN" (as Yandex's HTTP interface guide
// shows), the token got through the Yandex Cloud Go SDK (internal/yandexauth,
// shared with Lockbox) from a service-account key or the instance's
// metadata service and renewed hourly; auth=static signs requests with AWS
// Signature V4 and a static access key made for a service account (as
// Yandex's AWS tools guide describes). The service account needs the
// ydb.editor role. This covers document tables with the operations above,
// each atomic on one item. A native YDB engine (YQL over the YDB Go SDK)
// would add row tables with secondary indexes, interactive transactions
// across tables and rows, and queries (counts, GROUP BY) computed in the
// database instead of read and counted here.
package store
