/** The console's URLs, built in one place so pages link to each other without spelling paths out. */
const seg = encodeURIComponent;

const query = (q: Record<string, string | undefined>) => {
  const params = new URLSearchParams(Object.entries(q).filter((e): e is [string, string] => e[1] !== undefined && e[1] !== ""));
  return params.size ? `?${params}` : "";
};

export const paths = {
  runs: () => "/runs",
  run: (runId: string) => `/runs/${seg(runId)}`,
  items: (runId: string, q: { status?: string; after?: string; before?: string } = {}) => `/runs/${seg(runId)}/items${query(q)}`,
  item: (runId: string, itemId: string) => `/runs/${seg(runId)}/items/${seg(itemId)}`,
  /** A run's review queue; `q`: the filter, and a note of what was just decided. */
  review: (runId?: string, q: Record<string, string | undefined> = {}) => (runId ? `/runs/${seg(runId)}/review${query(q)}` : "/review"),
  reviewItem: (runId: string, itemId: string, q: Record<string, string | undefined> = {}) => `/runs/${seg(runId)}/review/${seg(itemId)}${query(q)}`,
  deadLetters: (runId?: string) => (runId ? `/runs/${seg(runId)}/dead-letters` : "/dead-letters"),
  pipelines: () => "/pipelines",
  pipeline: (id: string) => `/pipelines/${seg(id)}`,
};
