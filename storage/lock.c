/* One process per database: an fcntl write lock on a file beside it
 * (`DB.lock`), taken before anything opens the database. SQLite's own locks
 * let a second gateway open the live file and write rollups into it before
 * it failed on a port; this lock makes the second one stop first, saying
 * which process holds the database.
 *
 * A POSIX record lock belongs to the process and goes with it, also on
 * kill -9 or a power cut: a stale lock file is harmless, only the lock
 * counts. The PID written into the file is for a person reading it; the
 * holder is asked of the kernel (F_GETLK). */
#define LOG_MODULE "storage"
#include "common/common.h"
#include "storage/storage.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

int stor_lock(const char *db_path, int *fd_out, pid_t *holder) {
  char path[4096];
  *fd_out = -1;
  if (holder)
    *holder = 0;
  if (snprintf(path, sizeof(path), "%s.lock", db_path) >= (int)sizeof(path))
    return -ENAMETOOLONG;
  int fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0640);
  if (fd < 0) {
    int rc = -errno;
    log_err("cannot open %s: %s", path, strerror(errno));
    return rc;
  }
  struct flock fl = {.l_type = F_WRLCK, .l_whence = SEEK_SET};
  if (fcntl(fd, F_SETLK, &fl) != 0) {
    int e = errno;
    if (e != EAGAIN && e != EACCES) {
      log_err("cannot lock %s: %s", path, strerror(e));
      close(fd);
      return -e;
    }
    struct flock who = {.l_type = F_WRLCK, .l_whence = SEEK_SET};
    pid_t pid = fcntl(fd, F_GETLK, &who) == 0 && who.l_type != F_UNLCK ? who.l_pid : 0;
    if (holder)
      *holder = pid;
    if (pid > 0)
      log_err("%s is in use by process %ld (lock %s): one instance per database", db_path,
              (long)pid, path);
    else
      log_err("%s is in use by another process (lock %s): one instance per database", db_path,
              path);
    close(fd);
    return -EBUSY;
  }
  char line[32];
  int n = snprintf(line, sizeof(line), "%ld\n", (long)getpid());
  if (ftruncate(fd, 0) != 0 || pwrite(fd, line, (size_t)n, 0) != n)
    log_debug("cannot write the PID into %s: %s", path, strerror(errno)); /* informative only */
  *fd_out = fd;
  return 0;
}

void stor_unlock(int fd) {
  if (fd >= 0)
    close(fd); /* releases the lock; the file stays, harmless */
}
