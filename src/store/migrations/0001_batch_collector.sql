ALTER TABLE "attempts" ADD COLUMN "list_cost_usd" double precision DEFAULT 0 NOT NULL;--> statement-breakpoint
ALTER TABLE "provider_batches" ADD COLUMN "worker_id" text;