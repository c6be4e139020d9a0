CREATE TABLE "attempts" (
	"id" bigserial PRIMARY KEY NOT NULL,
	"run_id" text NOT NULL,
	"stage_id" text NOT NULL,
	"item_id" text NOT NULL,
	"attempt" integer NOT NULL,
	"provider" text,
	"model" text,
	"mode" text,
	"request_hash" text,
	"input_tokens" integer DEFAULT 0 NOT NULL,
	"output_tokens" integer DEFAULT 0 NOT NULL,
	"cached_tokens" integer DEFAULT 0 NOT NULL,
	"cost_usd" double precision DEFAULT 0 NOT NULL,
	"latency_ms" integer DEFAULT 0 NOT NULL,
	"error_class" text,
	"error_message" text,
	"created_at" timestamp with time zone DEFAULT now() NOT NULL
);
--> statement-breakpoint
CREATE TABLE "provider_batches" (
	"id" text PRIMARY KEY NOT NULL,
	"run_id" text NOT NULL,
	"stage_index" integer NOT NULL,
	"provider" text NOT NULL,
	"status" text NOT NULL,
	"requests" jsonb NOT NULL,
	"created_at" timestamp with time zone DEFAULT now() NOT NULL,
	"updated_at" timestamp with time zone DEFAULT now() NOT NULL
);
--> statement-breakpoint
CREATE TABLE "rejected_rows" (
	"id" bigserial PRIMARY KEY NOT NULL,
	"run_id" text NOT NULL,
	"line" integer NOT NULL,
	"item_id" text,
	"state" text NOT NULL,
	"reason" text NOT NULL,
	"raw" text
);
--> statement-breakpoint
CREATE TABLE "request_cache" (
	"request_hash" text PRIMARY KEY NOT NULL,
	"provider" text NOT NULL,
	"model" text NOT NULL,
	"response" jsonb NOT NULL,
	"created_at" timestamp with time zone DEFAULT now() NOT NULL
);
--> statement-breakpoint
CREATE TABLE "run_items" (
	"run_id" text NOT NULL,
	"item_id" text NOT NULL,
	"line" integer NOT NULL,
	"content_hash" text NOT NULL,
	"data" jsonb NOT NULL,
	CONSTRAINT "run_items_run_id_item_id_pk" PRIMARY KEY("run_id","item_id")
);
--> statement-breakpoint
CREATE TABLE "runs" (
	"id" text PRIMARY KEY NOT NULL,
	"pipeline" text NOT NULL,
	"status" text NOT NULL,
	"input_path" text,
	"input_fingerprint" text,
	"stages" jsonb NOT NULL,
	"options" jsonb DEFAULT '{}'::jsonb NOT NULL,
	"loaded_at" timestamp with time zone,
	"rows_read" integer DEFAULT 0 NOT NULL,
	"created_at" timestamp with time zone DEFAULT now() NOT NULL,
	"finished_at" timestamp with time zone,
	"error" text
);
--> statement-breakpoint
CREATE TABLE "stage_outputs" (
	"id" bigserial PRIMARY KEY NOT NULL,
	"pipeline" text NOT NULL,
	"stage_id" text NOT NULL,
	"stage_version" text NOT NULL,
	"item_id" text NOT NULL,
	"input_hash" text NOT NULL,
	"status" text NOT NULL,
	"output" jsonb,
	"output_hash" text NOT NULL,
	"cost_usd" double precision DEFAULT 0 NOT NULL,
	"run_id" text NOT NULL,
	"created_at" timestamp with time zone DEFAULT now() NOT NULL
);
--> statement-breakpoint
CREATE TABLE "work" (
	"run_id" text NOT NULL,
	"stage_index" integer NOT NULL,
	"item_id" text NOT NULL,
	"stage_id" text NOT NULL,
	"status" text NOT NULL,
	"input_hash" text,
	"output_id" bigint,
	"reused" boolean DEFAULT false NOT NULL,
	"attempts" integer DEFAULT 0 NOT NULL,
	"error_class" text,
	"error_message" text,
	"claimed_by" text,
	"not_before" timestamp with time zone,
	"updated_at" timestamp with time zone DEFAULT now() NOT NULL,
	CONSTRAINT "work_run_id_stage_index_item_id_pk" PRIMARY KEY("run_id","stage_index","item_id")
);
--> statement-breakpoint
CREATE TABLE "workers" (
	"id" text PRIMARY KEY NOT NULL,
	"run_id" text NOT NULL,
	"pid" integer NOT NULL,
	"host" text NOT NULL,
	"heartbeat_at" timestamp with time zone DEFAULT now() NOT NULL
);
--> statement-breakpoint
CREATE INDEX "attempts_run_stage" ON "attempts" USING btree ("run_id","stage_id");--> statement-breakpoint
CREATE INDEX "provider_batches_run" ON "provider_batches" USING btree ("run_id","stage_index");--> statement-breakpoint
CREATE UNIQUE INDEX "rejected_rows_run_line" ON "rejected_rows" USING btree ("run_id","line");--> statement-breakpoint
CREATE UNIQUE INDEX "stage_outputs_key" ON "stage_outputs" USING btree ("pipeline","stage_id","stage_version","item_id","input_hash");--> statement-breakpoint
CREATE INDEX "work_claim" ON "work" USING btree ("run_id","stage_index","status");