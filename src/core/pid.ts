/**
 * Whether a process of this machine is still running: how a lock file or a
 * journal left behind tells a live owner from one killed with `kill -9`.
 */
export function isProcessAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    // It exists, but belongs to another user.
    return (err as NodeJS.ErrnoException).code === "EPERM";
  }
}
