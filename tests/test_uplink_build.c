/* Making the uplink's messages (gateway/uplink/uplink_build.c) against a real
 * database: minute and hour frames from the rollups, a ledger entry as a
 * signed 6011, hourly seals whose Digest and Frames are recomputed here
 * from the frames the outbox holds (as the receiver does), the chain's
 * Hash/Prev continuity, and cursors that make a second pass, or a restart,
 * make nothing twice. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>

#include <cmocka.h>

#include "common/common.h"
#include "gateway/uplink/uplink.h"
#include "protocol/protocol.h"
#include "storage/storage.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

/* A throwaway EC P-256 key for signing in tests. */
static const char key_pem[] = "-----BEGIN PRIVATE KEY-----\n"
                              "MIGHAgEAMBMGByqGSM49AgEGCCqGSM49AwEHBG0wawIBAQQgVpCYsUoN1PxWpeE0\n"
                              "agjsH/d2Gjqln6B3gxu7+oCr/kOhRANCAARBjqUUP6tq0Z9R6DxEoHkaLHDINBSB\n"
                              "qJxBDDiv9pJZ9kCdAnAvTXEr542Ail7SEPpVhfVKSYdPPIK6BvKatDow\n"
                              "-----END PRIVATE KEY-----\n";

typedef struct fx {
  char dir[64], db_path[96], key_path[96];
  sg_config_t *cfg;
  stor_db_t *db;
  stor_reader_t *rd;
  struct gw gw;
  double now;
  int64_t hour; /* the start of the hour two hours ago */
} fx_t;

static int fx_setup(void **state) {
  fx_t *f = calloc(1, sizeof(*f));
  assert_non_null(f);
  setenv("TZ", "Asia/Shanghai", 1);
  tzset();
  snprintf(f->dir, sizeof(f->dir), "/tmp/test_uplink_build.XXXXXX");
  assert_non_null(mkdtemp(f->dir));
  snprintf(f->db_path, sizeof(f->db_path), "%s/site.db", f->dir);
  snprintf(f->key_path, sizeof(f->key_path), "%s/gw.key", f->dir);
  FILE *k = fopen(f->key_path, "w");
  assert_non_null(k);
  fputs(key_pem, k);
  fclose(k);
  char conf[1024], err[256];
  snprintf(conf, sizeof(conf),
           "[site]\nid = UT-SITE-01\n[storage]\npath = %s\n"
           "[device dust-01]\ntype = dust\n[device dust-02]\ntype = dust\n"
           "[device wb-01]\ntype = scale\n"
           "[uplink]\nkey = %s\nlag_s = 0\nrtd_interval_s = 60\n",
           f->db_path, f->key_path);
  assert_int_equal(sg_config_parse(conf, "ut.conf", &f->cfg, err, sizeof(err)), 0);
  stor_options_t o = {.path = f->db_path, .batch_ms = 10, .queue_max = 10000, .raw_days = 31};
  assert_int_equal(stor_open(&o, &f->db), 0);
  assert_int_equal(stor_reader_open(f->db_path, &f->rd), 0);
  /* Half a minute into the last whole minute: the passes at now + 1 and
   * now + 10 stay in that minute (and hour), so no minute frame or hourly
   * seal falls due between them, whenever the test runs. */
  f->now = floor(sg_now() / 60.0) * 60.0 - 30.0;
  f->hour = (int64_t)f->now - ((int64_t)f->now % 3600) - 7200;
  f->gw.cfg = f->cfg;
  f->gw.db = f->db;
  f->gw.started = f->now;
  /* The site profile (6061) as already sent, so that each test's chain
   * starts with what it is about; site_profile_* clears it. */
  char prof[UPLINK_PROFILE_MAX];
  assert_int_equal(uplink_profile_fields(f->cfg, prof, sizeof(prof)), 0);
  const stor_ob_var_t pv = {.name = "profile", .s = prof};
  assert_int_equal(stor_outbox_set(f->db, &pv, 1), 0);
  *state = f;
  return 0;
}

static int fx_teardown(void **state) {
  fx_t *f = *state;
  stor_reader_close(f->rd);
  stor_close(f->db);
  sg_config_free(f->cfg);
  char cmd[160];
  snprintf(cmd, sizeof(cmd), "rm -rf %s", f->dir);
  assert_int_equal(system(cmd), 0);
  free(f);
  return 0;
}

/* PM10 at dust-01 every minute of the hour two hours ago (i + 50), and at
 * dust-02 lower (i + 10); the cursors start at that hour. */
static void seed(fx_t *f) {
  uint32_t d1, d2;
  assert_int_equal(stor_device_id(f->db, "dust-01", &d1), 0);
  assert_int_equal(stor_device_id(f->db, "dust-02", &d2), 0);
  for (int i = 0; i < 60; i++) {
    stor_reading_t r[2] = {{.device = d1,
                            .quantity = PROTO_Q_PM10,
                            .t_ms = (f->hour + 60 * i + 5) * 1000,
                            .value = i + 50},
                           {.device = d2,
                            .quantity = PROTO_Q_PM10,
                            .t_ms = (f->hour + 60 * i + 5) * 1000,
                            .value = i + 10}};
    assert_int_equal(stor_append(f->db, r, 2), 0);
  }
  assert_int_equal(stor_flush(f->db), 0);
  const stor_ob_var_t v[] = {{.name = "next_minute", .i = f->hour},
                             {.name = "next_hour", .i = f->hour},
                             {.name = "next_seal", .i = f->hour},
                             {.name = "next_rtd", .i = (int64_t)f->now + 100000}};
  assert_int_equal(stor_outbox_set(f->db, v, 4), 0);
  stor_ticket_t t;
  memset(&t, 0, sizeof(t));
  strcpy(t.source, "scale");
  strcpy(t.type, "waste");
  strcpy(t.scale, "wb-01");
  t.no = 1042;
  t.t = (int64_t)f->now - 600;
  strcpy(t.plate, "黑A12345");
  strcpy(t.dir, "out");
  t.weighed = true;
  t.gross_kg = 31800;
  t.tare_kg = 14200;
  t.net_kg = 17600;
  strcpy(t.category, "engineering");
  strcpy(t.kind, "concrete");
  strcpy(t.dest, "recycling");
  strcpy(t.dest_name, "哈尔滨再生资源厂; 2号门");
  stor_ticket_result_t res;
  assert_int_equal(stor_ticket_commit(f->db, &t, &res), 0);
  assert_int_equal(res.status, STOR_TICKET_CREATED);
}

typedef struct found {
  size_t n;
  stor_ob_msg_t m[512];
  char *frames[512];
} found_t;

static int keep(void *arg, const stor_ob_msg_t *m) {
  found_t *f = arg;
  assert_true(f->n < 512);
  f->m[f->n] = *m;
  f->frames[f->n] = strndup(m->frames, m->frames_len);
  f->m[f->n].frames = f->frames[f->n];
  f->n++;
  return 0;
}

static void found_free(found_t *f) {
  for (size_t i = 0; i < f->n; i++)
    free(f->frames[i]);
  f->n = 0;
}

static hj212_frame_t fr;

/* The CP of a message in one frame. */
static const hj212_frame_t *decode(const stor_ob_msg_t *m) {
  char err[128];
  int rc = hj212_decode(m->frames, m->frames_len, &fr, err, sizeof(err));
  if (rc != 0)
    print_error("%s: %s\n", err, m->frames);
  assert_int_equal(rc, 0);
  return &fr;
}

static void hex(const uint8_t *b, size_t n, char *out) {
  for (size_t i = 0; i < n; i++)
    sprintf(out + 2 * i, "%02X", b[i]);
}

static void a_pass_makes_frames_a_signed_ticket_and_seals_that_verify(void **state) {
  fx_t *f = *state;
  seed(f);
  uplink_builder_t *b;
  char err[256];
  assert_int_equal(uplink_builder_new(&f->gw, &b, err, sizeof(err)), 0);
  uplink_build_result_t r;
  uplink_builder_run(b, f->now, &r);
  assert_int_equal(r.err, 0);
  assert_true(r.made > 120); /* 2081, 6011, two hours of minutes, two hours, seals */

  /* The hour frame of that hour: dust-01 is the worse station. */
  found_t h = {0};
  assert_int_equal(stor_outbox_history(f->rd, "2061", f->hour, f->hour, 10, keep, &h), 0);
  assert_int_equal(h.n, 1);
  const hj212_frame_t *d = decode(&h.m[0]);
  assert_string_equal(d->h.st, "39");
  assert_int_equal(d->h.flag, 5);
  assert_string_equal(d->h.mn, "UT-SITE-01");
  assert_string_equal(hj212_get(d, -1, "a34002-Min"), "50.0");
  assert_string_equal(hj212_get(d, -1, "a34002-Avg"), "79.5");
  assert_string_equal(hj212_get(d, -1, "a34002-Max"), "109.0");
  assert_string_equal(hj212_get(d, -1, "a34002-Flag"), "N");
  found_free(&h);

  /* The signed chain: 6011 first, then the two seals, Prev to Hash. */
  found_t s = {0};
  assert_int_equal(stor_outbox_by_seq(f->rd, 1, 100, 100, keep, &s), 0);
  assert_int_equal(s.n, 3);
  uint8_t prev[32] = {0};
  for (size_t i = 0; i < s.n; i++) {
    d = decode(&s.m[i]);
    hj212_signed_t sg;
    assert_int_equal(hj212_signed_parse(d->cp, d->cp_len, &sg, err, sizeof(err)), 0);
    assert_int_equal(sg.seq, i + 1);
    assert_int_equal(s.m[i].seq, i + 1);
    assert_memory_equal(sg.prev, prev, 32);
    uint8_t hash[32];
    proto_sha256(sg.prev, 32, d->cp, sg.canon_len, hash);
    assert_memory_equal(hash, sg.hash, 32);
    memcpy(prev, sg.hash, 32);
    if (i == 0) {
      assert_string_equal(d->h.cn, "6011");
      assert_string_equal(hj212_get(d, 0, "LedgerId"), "1");
      assert_string_equal(hj212_get(d, 0, "Plate"), "黑A12345");
      assert_string_equal(hj212_get(d, 0, "NetKg"), "17600");
      assert_string_equal(hj212_get(d, 1, "DestName"), "哈尔滨再生资源厂%3B 2号门");
      assert_int_equal(strlen(hj212_get(d, 2, "LedgerHash")), 64);
      continue;
    }
    /* A seal: recompute its digest over the hour's 2011/2051/2061 data
     * segments in QN order, as the receiver does. */
    assert_string_equal(d->h.cn, "6041");
    int64_t hour = f->hour + 3600 * (int64_t)(i - 1);
    char dt[15];
    uplink_datatime(hour, dt);
    assert_string_equal(hj212_get(d, -1, "DataTime"), dt);
    char digest_got[65], frames_got[16];
    snprintf(digest_got, sizeof(digest_got), "%s", hj212_get(d, -1, "Digest"));
    snprintf(frames_got, sizeof(frames_got), "%s", hj212_get(d, -1, "Frames"));
    found_t e = {0};
    assert_int_equal(stor_outbox_env_frames(f->rd, hour, hour + 3600, keep, &e), 0);
    assert_int_equal(e.n, 61); /* 60 minutes and the hour */
    char *all = calloc(1, 61 * (HJ212_FRAME_MAX + 2));
    size_t len = 0;
    for (size_t k = 0; k < e.n; k++) {
      if (k)
        assert_true(strcmp(e.m[k - 1].qn, e.m[k].qn) < 0);
      const hj212_frame_t *ef = decode(&e.m[k]);
      memcpy(all + len, e.m[k].frames + 6, ef->data_len);
      memcpy(all + len + ef->data_len, "\r\n", 2);
      len += ef->data_len + 2;
    }
    uint8_t dg[32];
    char dh[65];
    proto_sha256(all, len, NULL, 0, dg);
    hex(dg, 32, dh);
    free(all);
    found_free(&e);
    assert_string_equal(digest_got, dh);
    assert_string_equal(frames_got, "61");
  }
  found_free(&s);

  /* Again at the same time: nothing is due any more. */
  uplink_builder_run(b, f->now, &r);
  assert_int_equal(r.err, 0);
  assert_int_equal(r.made, 0);
  uplink_builder_free(b);

  /* A restart: only its 2081, and the chain goes on from the database. */
  assert_int_equal(uplink_builder_new(&f->gw, &b, err, sizeof(err)), 0);
  uplink_builder_run(b, f->now + 1, &r);
  assert_int_equal(r.err, 0);
  assert_int_equal(r.made, 1);
  assert_int_equal(r.chain_seq, 3);
  uplink_builder_free(b);
  found_t rs = {0};
  assert_int_equal(stor_outbox_history(f->rd, "2081", 0, (int64_t)f->now + 10, 10, keep, &rs), 0);
  assert_int_equal(rs.n, 2);
  assert_true(strcmp(rs.m[0].qn, rs.m[1].qn) < 0);
  found_free(&rs);
}

/* A minute's frame waits for the storage's batch window, whatever lag_s
 * says (here 0): a reading acknowledged at the minute's end is committed,
 * and read, at most batch_ms (5 s by default) later. */
static void a_minute_frame_waits_out_the_batch_window(void **state) {
  fx_t *f = *state;
  seed(f);
  assert_int_equal(f->cfg->uplink_lag_s, 0);
  assert_int_equal(f->cfg->batch_ms, 5000);
  uplink_builder_t *b;
  char err[256];
  assert_int_equal(uplink_builder_new(&f->gw, &b, err, sizeof(err)), 0);
  uplink_build_result_t r;
  found_t m = {0};
  uplink_builder_run(b, (double)(f->hour + 60 + 5), &r);
  assert_int_equal(r.err, 0);
  assert_int_equal(stor_outbox_history(f->rd, "2051", f->hour, f->hour, 10, keep, &m), 0);
  assert_int_equal(m.n, 0);
  uplink_builder_run(b, (double)(f->hour + 60 + 6), &r);
  assert_int_equal(r.err, 0);
  assert_int_equal(stor_outbox_history(f->rd, "2051", f->hour, f->hour + 60, 10, keep, &m), 0);
  assert_int_equal(m.n, 1);
  assert_string_equal(hj212_get(decode(&m.m[0]), -1, "a34002-Flag"), "N");
  found_free(&m);
  uplink_builder_free(b);
}

/* The site profile (6061): made at the first start before any other
 * signed record, with the name escaped, the areas and the coordinates;
 * not again on a restart with the same configuration; again, chained on,
 * once a field changes, and without coordinates when they are unknown. */
static void site_profile_is_signed_at_first_start_and_again_when_it_changes(void **state) {
  fx_t *f = *state;
  const stor_ob_var_t none = {.name = "profile", .s = ""};
  assert_int_equal(stor_outbox_set(f->db, &none, 1), 0);
  sg_config_t *cfg = f->cfg;
  snprintf(cfg->site_name, sizeof(cfg->site_name), "松北示范工地, 1#楼");
  cfg->area_cast_m2 = 38000;
  cfg->area_prefab_m2 = 24000;
  cfg->latitude = 45.8032;
  cfg->longitude = 126.535;
  uplink_builder_t *b;
  char err[256];
  uplink_build_result_t r;
  assert_int_equal(uplink_builder_new(&f->gw, &b, err, sizeof(err)), 0);
  uplink_builder_run(b, f->now, &r);
  assert_int_equal(r.err, 0);
  assert_int_equal(r.chain_seq, 1);
  uplink_builder_free(b);
  found_t s = {0};
  assert_int_equal(stor_outbox_by_seq(f->rd, 1, 10, 10, keep, &s), 0);
  assert_int_equal(s.n, 1);
  const hj212_frame_t *d = decode(&s.m[0]);
  assert_string_equal(d->h.cn, "6061");
  hj212_signed_t sg;
  assert_int_equal(hj212_signed_parse(d->cp, d->cp_len, &sg, err, sizeof(err)), 0);
  assert_int_equal(sg.seq, 1);
  uint8_t hash[32], zero[32] = {0};
  assert_memory_equal(sg.prev, zero, 32);
  proto_sha256(sg.prev, 32, d->cp, sg.canon_len, hash);
  assert_memory_equal(hash, sg.hash, 32);
  assert_string_equal(hj212_get(d, -1, "Name"), "松北示范工地%2C 1#楼");
  assert_string_equal(hj212_get(d, -1, "AreaCastM2"), "38000.0");
  assert_string_equal(hj212_get(d, -1, "AreaPrefabM2"), "24000.0");
  assert_string_equal(hj212_get(d, -1, "Lat"), "45.803200");
  assert_string_equal(hj212_get(d, -1, "Lon"), "126.535000");
  found_free(&s);

  /* A restart, same configuration: no profile. */
  assert_int_equal(uplink_builder_new(&f->gw, &b, err, sizeof(err)), 0);
  uplink_builder_run(b, f->now + 1, &r);
  assert_int_equal(r.err, 0);
  assert_int_equal(r.chain_seq, 1);
  uplink_builder_free(b);

  /* The prefab area grows and the position is forgotten: a second one. */
  cfg->area_prefab_m2 = 26000.5;
  cfg->latitude = cfg->longitude = NAN;
  assert_int_equal(uplink_builder_new(&f->gw, &b, err, sizeof(err)), 0);
  uplink_builder_run(b, f->now + 2, &r);
  assert_int_equal(r.err, 0);
  assert_int_equal(r.chain_seq, 2);
  uplink_builder_run(b, f->now + 3, &r); /* and only once */
  assert_int_equal(r.chain_seq, 2);
  uplink_builder_free(b);
  assert_int_equal(stor_outbox_by_seq(f->rd, 2, 10, 10, keep, &s), 0);
  assert_int_equal(s.n, 1);
  d = decode(&s.m[0]);
  assert_string_equal(d->h.cn, "6061");
  assert_int_equal(hj212_signed_parse(d->cp, d->cp_len, &sg, err, sizeof(err)), 0);
  assert_int_equal(sg.seq, 2);
  assert_memory_equal(sg.prev, hash, 32);
  assert_string_equal(hj212_get(d, -1, "AreaPrefabM2"), "26000.5");
  assert_null(hj212_get(d, -1, "Lat"));
  assert_null(hj212_get(d, -1, "Lon"));
  found_free(&s);
}

/* Yesterday's energy rows become one 6031: the site's totals with the
 * factors, carbon recomputable from the figures as sent, then a record per
 * unit. */
static void a_finished_day_of_energy_becomes_a_signed_summary(void **state) {
  fx_t *f = *state;
  time_t now = (time_t)f->now;
  struct tm tm;
  localtime_r(&now, &tm);
  tm.tm_hour = tm.tm_min = tm.tm_sec = 0;
  tm.tm_mday -= 1;
  tm.tm_isdst = -1;
  int64_t day = (int64_t)mktime(&tm);
  stor_energy_row_t rows[2] = {
      {.unit = "crane-01", .day = (double)day, .kwh = 820.14, .run_s = 30120},
      {.unit = "ex-02", .day = (double)day, .fuel_l = 210.04, .run_s = 25100}};
  stor_eq_write_t w = {.days = rows, .n_days = 2};
  assert_int_equal(stor_equipment_write(f->db, &w), 0);
  const stor_ob_var_t v[] = {{.name = "next_energy", .i = day},
                             {.name = "next_rtd", .i = (int64_t)f->now + 100000}};
  assert_int_equal(stor_outbox_set(f->db, v, 2), 0);
  uplink_builder_t *b;
  char err[256];
  assert_int_equal(uplink_builder_new(&f->gw, &b, err, sizeof(err)), 0);
  uplink_build_result_t r;
  uplink_builder_run(b, f->now, &r);
  assert_int_equal(r.err, 0);
  uplink_builder_free(b);
  found_t s = {0};
  assert_int_equal(stor_outbox_by_seq(f->rd, 1, 1, 10, keep, &s), 0);
  assert_int_equal(s.n, 1);
  const hj212_frame_t *d = decode(&s.m[0]);
  assert_string_equal(d->h.cn, "6031");
  char dt[15];
  uplink_datatime(day, dt);
  assert_string_equal(hj212_get(d, 0, "DataTime"), dt);
  assert_string_equal(hj212_get(d, 0, "EnergyKwh"), "820.1");
  assert_string_equal(hj212_get(d, 0, "FuelL"), "210.0");
  assert_string_equal(hj212_get(d, 0, "EfGrid"), "0.5703");
  assert_string_equal(hj212_get(d, 0, "EfFuel"), "2.6300");
  /* 820.1 x 0.5703 + 210.0 x 2.63 = 467.70 + 552.30 = 1020.0 */
  assert_string_equal(hj212_get(d, 0, "CarbonKg"), "1020.0");
  assert_string_equal(hj212_get(d, 1, "EqId"), "crane-01");
  assert_string_equal(hj212_get(d, 2, "EqId"), "ex-02");
  assert_string_equal(hj212_get(d, 2, "RunS"), "25100");
  found_free(&s);
}

/* The machinery register's changes become 6051s (the row as it was after
 * each change, free text escaped in records of its own) and the entries
 * and exits 6052s, in the order stored, each once: a second builder (a
 * restart) makes none again. */
static void machinery_changes_and_moves_become_signed_records_once(void **state) {
  fx_t *f = *state;
  const stor_ob_var_t v[] = {{.name = "next_rtd", .i = (int64_t)f->now + 100000}};
  assert_int_equal(stor_outbox_set(f->db, v, 1), 0);
  proto_machine_t m = {.code = "23010100000103",
                       .type = "旋挖钻机",
                       .stage = PROTO_STAGE_II,
                       .power_kw = 198,
                       .fuel = PROTO_FUEL_DIESEL,
                       .owner = "宏基; 桩基, 2队",
                       .label = "yellow",
                       .terminal = "rig-01"};
  double t0 = f->now - 900;
  assert_int_equal(stor_machine_put(f->db, &m, true, "王工", "进场登记", t0), 0);
  m.stage = PROTO_STAGE_III;
  m.terminal[0] = '\0';
  assert_int_equal(stor_machine_put(f->db, &m, false, "王工", "换装国三发动机", t0 + 60), 0);
  stor_move_t mv = {.gate = "gate-01",
                    .no = 7,
                    .code = "23010100000103",
                    .in = true,
                    .t = t0 + 120,
                    .source = "gate",
                    .actor = "gate-01",
                    .received = t0 + 121};
  stor_move_result_t res;
  assert_int_equal(stor_move_commit(f->db, &mv, &res), 0);
  stor_move_t out = {.gate = "sitectl",
                     .code = "23010100000103",
                     .t = t0 + 600,
                     .source = "sitectl",
                     .actor = "李工",
                     .received = t0 + 600};
  assert_int_equal(stor_move_commit(f->db, &out, &res), 0);
  assert_int_equal(stor_machine_retire(f->db, m.code, "李工", "退场", t0 + 700), 0);

  uplink_builder_t *b;
  char err[256];
  assert_int_equal(uplink_builder_new(&f->gw, &b, err, sizeof(err)), 0);
  uplink_build_result_t r;
  uplink_builder_run(b, f->now, &r);
  assert_int_equal(r.err, 0);
  uplink_builder_free(b);
  found_t s = {0};
  assert_int_equal(stor_outbox_by_seq(f->rd, 1, 100, 100, keep, &s), 0);
  assert_int_equal(s.n, 5);
  static const char *const cns[] = {"6051", "6051", "6051", "6052", "6052"};
  for (size_t i = 0; i < 5; i++) {
    assert_string_equal(s.m[i].cn, cns[i]);
    assert_int_equal(s.m[i].seq, (int64_t)i + 1);
  }
  const hj212_frame_t *d = decode(&s.m[0]); /* added */
  char dt[15];
  uplink_datatime((int64_t)t0, dt);
  assert_string_equal(hj212_get(d, 0, "DataTime"), dt);
  assert_string_equal(hj212_get(d, 0, "Code"), "23010100000103");
  assert_string_equal(hj212_get(d, 0, "Action"), "add");
  assert_string_equal(hj212_get(d, 0, "Stage"), "II");
  assert_string_equal(hj212_get(d, 0, "PowerKw"), "198.0");
  assert_string_equal(hj212_get(d, 0, "Fuel"), "diesel");
  assert_string_equal(hj212_get(d, 0, "Terminal"), "rig-01");
  assert_string_equal(hj212_get(d, 1, "Type"), "旋挖钻机");
  assert_string_equal(hj212_get(d, 2, "Owner"), "宏基%3B 桩基%2C 2队");
  assert_string_equal(hj212_get(d, 3, "By"), "王工");
  assert_string_equal(hj212_get(d, 4, "Reason"), "进场登记");
  d = decode(&s.m[1]); /* changed: the row after the change */
  assert_string_equal(hj212_get(d, 0, "Action"), "change");
  assert_string_equal(hj212_get(d, 0, "Stage"), "III");
  assert_null(hj212_get(d, 0, "Terminal"));
  d = decode(&s.m[2]); /* retired: no row */
  assert_string_equal(hj212_get(d, 0, "Action"), "retire");
  assert_null(hj212_get(d, 0, "Stage"));
  assert_string_equal(hj212_get(d, 2, "Reason"), "退场");
  d = decode(&s.m[3]); /* the gate's entry */
  assert_string_equal(hj212_get(d, 0, "Dir"), "in");
  assert_string_equal(hj212_get(d, 0, "Source"), "gate");
  assert_string_equal(hj212_get(d, 0, "Gate"), "gate-01");
  assert_string_equal(hj212_get(d, 0, "GateNo"), "7");
  d = decode(&s.m[4]); /* a person's exit */
  assert_string_equal(hj212_get(d, 0, "Dir"), "out");
  assert_string_equal(hj212_get(d, 0, "Source"), "sitectl");
  assert_null(hj212_get(d, 0, "Gate"));
  assert_string_equal(hj212_get(d, 1, "By"), "李工");
  /* each a signed record of the one chain */
  for (size_t i = 0; i < 5; i++) {
    d = decode(&s.m[i]);
    hj212_signed_t sg;
    assert_int_equal(hj212_signed_parse(d->cp, d->cp_len, &sg, err, sizeof(err)), 0);
    assert_int_equal(sg.seq, i + 1);
    assert_true(hj212_cn_is_signed(s.m[i].cn));
  }
  found_free(&s);

  /* a restart: the cursors say all of it was made */
  assert_int_equal(uplink_builder_new(&f->gw, &b, err, sizeof(err)), 0);
  uplink_builder_run(b, f->now + 10, &r);
  assert_int_equal(r.err, 0);
  uplink_builder_free(b);
  assert_int_equal(stor_outbox_by_seq(f->rd, 1, 100, 100, keep, &s), 0);
  assert_int_equal(s.n, 5);
  found_free(&s);
}

/* The machinery's day (6053) from the function the top file hands over
 * (a stand-in here: machinery_days() has its own tests): the site's sums
 * recomputable from the records, a record per machine, figures the
 * terminal did not give left out, an unregistered machine marked; a day
 * with no machine makes nothing. */
static int64_t busy_day;

static int two_machines(stor_reader_t *rd, const sg_config_t *cfg, int64_t day, int64_t end,
                        uplink_machine_day_cb cb, void *arg) {
  (void)rd;
  (void)cfg;
  assert_true(end > day);
  if (day != busy_day)
    return 0;
  uplink_machine_day_t a = {.code = "23010100000104",
                            .stage = "III",
                            .power_kw = 55,
                            .onsite_h = 24,
                            .engine_h = 16.5,
                            .idle_share = 0.25,
                            .fuel_l = 108.94,
                            .t_co2 = 0.2865,
                            .nox_kg = 1.8150,
                            .pm_kg = 0.12341};
  uplink_machine_day_t b = {
      .code = "X-1", .onsite_h = 2.5, .engine_h = NAN, .idle_share = NAN, .fuel_l = NAN};
  return cb(arg, &a) || cb(arg, &b);
}

static void a_finished_day_of_machinery_becomes_a_signed_summary(void **state) {
  fx_t *f = *state;
  time_t now = (time_t)f->now;
  struct tm tm;
  localtime_r(&now, &tm);
  tm.tm_hour = tm.tm_min = tm.tm_sec = 0;
  tm.tm_mday -= 2;
  tm.tm_isdst = -1;
  int64_t quiet = (int64_t)mktime(&tm); /* the day before yesterday: no machine */
  tm.tm_mday += 1;
  tm.tm_isdst = -1;
  busy_day = (int64_t)mktime(&tm);
  const stor_ob_var_t v[] = {{.name = "next_mach_day", .i = quiet},
                             {.name = "next_rtd", .i = (int64_t)f->now + 100000}};
  assert_int_equal(stor_outbox_set(f->db, v, 2), 0);
  uplink_set_machine_days(two_machines);
  uplink_builder_t *b;
  char err[256];
  assert_int_equal(uplink_builder_new(&f->gw, &b, err, sizeof(err)), 0);
  uplink_build_result_t r;
  uplink_builder_run(b, f->now + 3600, &r); /* an hour on: yesterday has had its wait */
  uplink_set_machine_days(NULL);
  assert_int_equal(r.err, 0);
  uplink_builder_free(b);
  found_t s = {0};
  assert_int_equal(stor_outbox_by_seq(f->rd, 1, 10, 10, keep, &s), 0);
  assert_int_equal(s.n, 1);
  assert_string_equal(s.m[0].cn, "6053");
  const hj212_frame_t *d = decode(&s.m[0]);
  char dt[15];
  uplink_datatime(busy_day, dt);
  assert_string_equal(hj212_get(d, 0, "DataTime"), dt);
  assert_string_equal(hj212_get(d, 0, "Machines"), "2");
  assert_string_equal(hj212_get(d, 0, "FuelL"), "108.9");
  assert_string_equal(hj212_get(d, 0, "Co2Kg"), "286.5");
  assert_string_equal(hj212_get(d, 0, "EfFuel"), "2.6300");
  assert_string_equal(hj212_get(d, 1, "Code"), "23010100000104");
  assert_string_equal(hj212_get(d, 1, "Stage"), "III");
  assert_string_equal(hj212_get(d, 1, "PowerKw"), "55.0");
  assert_string_equal(hj212_get(d, 1, "OnsiteH"), "24.00");
  assert_string_equal(hj212_get(d, 1, "EngineH"), "16.50");
  assert_string_equal(hj212_get(d, 1, "IdleShare"), "0.25");
  assert_string_equal(hj212_get(d, 1, "NoxKg"), "1.815");
  assert_string_equal(hj212_get(d, 1, "PmKg"), "0.1234");
  assert_string_equal(hj212_get(d, 2, "Code"), "X-1");
  assert_string_equal(hj212_get(d, 2, "Registered"), "0");
  assert_null(hj212_get(d, 2, "EngineH"));
  assert_null(hj212_get(d, 2, "FuelL"));
  assert_string_equal(hj212_get(d, 2, "Co2Kg"), "0.0");
  found_free(&s);
}

static void datatime_round_trips_in_beijing_time(void **state) {
  (void)state;
  char dt[15];
  uplink_datatime(1795190400, dt); /* 2026-11-21T00:00:00+08:00 */
  assert_string_equal(dt, "20261121000000");
  assert_int_equal(uplink_parse_datatime("20261121000000"), 1795190400);
  assert_int_equal(uplink_parse_datatime("2026112100000"), -1);
  assert_int_equal(uplink_parse_datatime("20261341000000"), -1);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test_setup_teardown(a_pass_makes_frames_a_signed_ticket_and_seals_that_verify,
                                      fx_setup, fx_teardown),
      cmocka_unit_test_setup_teardown(
          site_profile_is_signed_at_first_start_and_again_when_it_changes, fx_setup, fx_teardown),
      cmocka_unit_test_setup_teardown(a_finished_day_of_energy_becomes_a_signed_summary, fx_setup,
                                      fx_teardown),
      cmocka_unit_test_setup_teardown(machinery_changes_and_moves_become_signed_records_once,
                                      fx_setup, fx_teardown),
      cmocka_unit_test_setup_teardown(a_finished_day_of_machinery_becomes_a_signed_summary,
                                      fx_setup, fx_teardown),
      cmocka_unit_test_setup_teardown(a_minute_frame_waits_out_the_batch_window, fx_setup,
                                      fx_teardown),
      cmocka_unit_test(datatime_round_trips_in_beijing_time),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
