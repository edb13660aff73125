/* stor_lock: one process per database, the second told who holds it. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>

#include <cmocka.h>

#include "common/common.h"
#include "storage/storage.h"

#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <unistd.h>

static char dir[] = "/tmp/sitegate-lock.XXXXXX";
static char db[64];

static int make_dir(void **state) {
  (void)state;
  assert_non_null(mkdtemp(dir));
  snprintf(db, sizeof(db), "%s/site.db", dir);
  log_threshold = LOG_LVL_ERR - 1; /* the refusals below are expected */
  return 0;
}

static int remove_dir(void **state) {
  (void)state;
  char lock[80];
  snprintf(lock, sizeof(lock), "%s.lock", db);
  unlink(lock);
  rmdir(dir);
  return 0;
}

/* A child takes the lock and holds it until its stdin pipe closes. */
static pid_t holder_start(int *release) {
  int ready[2], hold[2];
  assert_int_equal(pipe(ready), 0);
  assert_int_equal(pipe(hold), 0);
  pid_t pid = fork();
  assert_true(pid >= 0);
  if (pid == 0) {
    int fd;
    close(hold[1]); /* else its own copy keeps the pipe open */
    close(ready[0]);
    char c = stor_lock(db, &fd, NULL) == 0 ? 'y' : 'n';
    if (write(ready[1], &c, 1) != 1 || read(hold[0], &c, 1) < 0)
      _exit(2);
    _exit(0);
  }
  close(ready[1]);
  close(hold[0]);
  char c = 0;
  assert_int_equal(read(ready[0], &c, 1), 1);
  assert_int_equal(c, 'y');
  close(ready[0]);
  *release = hold[1];
  return pid;
}

static void second_process_is_refused_and_told_the_holders_pid(void **state) {
  (void)state;
  int release, fd;
  pid_t child = holder_start(&release), who = 0;
  assert_int_equal(stor_lock(db, &fd, &who), -EBUSY);
  assert_int_equal(fd, -1);
  assert_int_equal(who, child);
  close(release);
  int st;
  assert_int_equal(waitpid(child, &st, 0), child);
  assert_int_equal(stor_lock(db, &fd, &who), 0);
  assert_true(fd >= 0);
  stor_unlock(fd);
}

static void lock_dies_with_a_killed_holder(void **state) {
  (void)state;
  int release, fd;
  pid_t child = holder_start(&release);
  kill(child, SIGKILL);
  int st;
  assert_int_equal(waitpid(child, &st, 0), child);
  close(release);
  assert_int_equal(stor_lock(db, &fd, NULL), 0); /* the stale file is no obstacle */
  stor_unlock(fd);
}

static void lock_in_a_missing_folder_is_an_error_not_a_refusal(void **state) {
  (void)state;
  int fd;
  assert_int_equal(stor_lock("/nonexistent-sitegate/x.db", &fd, NULL), -ENOENT);
  assert_int_equal(fd, -1);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(second_process_is_refused_and_told_the_holders_pid),
      cmocka_unit_test(lock_dies_with_a_killed_holder),
      cmocka_unit_test(lock_in_a_missing_folder_is_an_error_not_a_refusal),
  };
  return cmocka_run_group_tests(tests, make_dir, remove_dir);
}
