DROP INDEX "work_claim_ordered";--> statement-breakpoint
CREATE INDEX "work_claimable" ON "work" USING btree ("run_id","stage_index","item_id") WHERE "work"."status" IN ('queued', 'failed_retryable');