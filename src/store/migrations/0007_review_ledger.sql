CREATE TABLE "review_decisions" (
	"id" bigserial PRIMARY KEY NOT NULL,
	"pipeline" text NOT NULL,
	"stage_id" text NOT NULL,
	"stage_version" text NOT NULL,
	"item_id" text NOT NULL,
	"input_hash" text NOT NULL,
	"decision" text NOT NULL,
	"edits" jsonb,
	"reviewer" text NOT NULL,
	"note" text,
	"run_id" text,
	"decided_at" timestamp with time zone DEFAULT now() NOT NULL
);
--> statement-breakpoint
CREATE TABLE "target_ledger" (
	"id" bigserial PRIMARY KEY NOT NULL,
	"run_id" text NOT NULL,
	"target" text NOT NULL,
	"key" text NOT NULL,
	"op" text NOT NULL,
	"before" jsonb,
	"after" jsonb,
	"at" timestamp with time zone DEFAULT now() NOT NULL
);
--> statement-breakpoint
ALTER TABLE "work" ADD COLUMN "review_id" bigint;--> statement-breakpoint
CREATE INDEX "review_decisions_key" ON "review_decisions" USING btree ("pipeline","stage_id","item_id","input_hash");--> statement-breakpoint
CREATE INDEX "target_ledger_run" ON "target_ledger" USING btree ("run_id");--> statement-breakpoint
CREATE INDEX "target_ledger_key" ON "target_ledger" USING btree ("target","key");