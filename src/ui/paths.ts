/** The console's URLs, built in one place so pages link to each other without spelling paths out. */
const seg = encodeURIComponent;

export const paths = {
  runs: () => "/runs",
  run: (runId: string) => `/runs/${seg(runId)}`,
  items: (runId: string, q: { status?: string; after?: string } = {}) => {
    const params = new URLSearchParams(Object.entries(q).filter((e): e is [string, string] => e[1] !== undefined));
    return `/runs/${seg(runId)}/items${params.size ? `?${params}` : ""}`;
  },
  item: (runId: string, itemId: string) => `/runs/${seg(runId)}/items/${seg(itemId)}`,
  deadLetters: (runId?: string) => (runId ? `/runs/${seg(runId)}/dead-letters` : "/dead-letters"),
  pipelines: () => "/pipelines",
  pipeline: (id: string) => `/pipelines/${seg(id)}`,
};
