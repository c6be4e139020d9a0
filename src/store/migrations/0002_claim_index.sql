DROP INDEX "work_claim";--> statement-breakpoint
CREATE INDEX "work_claim_ordered" ON "work" USING btree ("run_id","stage_index","status","item_id");