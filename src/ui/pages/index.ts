import type { ConsolePage } from "../context.ts";
import { deadLettersPage } from "./dead-letters.ts";
import { itemPage } from "./item.ts";
import { pipelinesPage } from "./pipelines.ts";
import { reviewPage } from "./review.ts";
import { runsPage } from "./runs.ts";

/** The console's pages, in navigation order. A new page is one module here. */
export const PAGES: readonly ConsolePage[] = [runsPage, itemPage, reviewPage, deadLettersPage, pipelinesPage];
