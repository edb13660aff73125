/* The receiver's decoded data (storage/rxdecode.c): a message's CP into the
 * rows of its tables, checked against values worked out by hand from
 * protocol/UPLINK.md's examples, and the SQL made from the table. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>

#include <cmocka.h>

#include "protocol/protocol.h"
#include "storage/rx_int.h"
#include "storage/storage.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define ROWS_MAX 16

typedef struct got {
  int n;
  char table[ROWS_MAX][32];
  int64_t t[ROWS_MAX], seq[ROWS_MAX];
  char v[ROWS_MAX][RX_COLS_MAX][64]; /* "NULL" for NULL */
} got_t;

static int collect(void *arg, const rx_row_t *r) {
  got_t *g = arg;
  assert_true(g->n < ROWS_MAX);
  snprintf(g->table[g->n], sizeof(g->table[0]), "%s", r->table->name);
  g->t[g->n] = r->t;
  g->seq[g->n] = r->seq;
  for (int i = 0; i < RX_COLS_MAX && r->table->cols[i].name; i++)
    snprintf(g->v[g->n][i], sizeof(g->v[0][0]), "%s", r->v[i] ? r->v[i] : "NULL");
  g->n++;
  return 0;
}

/* The value of column `col` of row `row`. */
static const char *val(const got_t *g, int row, const char *col) {
  const rx_table_t *t = stor__rx_tables;
  while (t->name && strcmp(t->name, g->table[row]) != 0)
    t++;
  assert_non_null(t->name);
  for (int i = 0; i < RX_COLS_MAX && t->cols[i].name; i++)
    if (!strcmp(t->cols[i].name, col))
      return g->v[row][i];
  fail_msg("no column %s in %s", col, t->name);
  return NULL;
}

static got_t *decode(const char *cn, const char *cp, bool is_signed, uint64_t seq) {
  static got_t g;
  memset(&g, 0, sizeof(g));
  stor_rx_msg_t m = {.t = 1763622000, .is_signed = is_signed, .cp_len = strlen(cp)};
  snprintf(m.cn, sizeof(m.cn), "%s", cn);
  snprintf(m.mn, sizeof(m.mn), "SITE-1");
  snprintf(m.qn, sizeof(m.qn), "20261120150000123");
  m.cp = (char *)cp;
  m.sig.seq = seq;
  assert_int_equal(stor__rx_decode(&m, collect, &g), 0);
  return &g;
}

static void minute_frame_gives_one_wide_row(void **state) {
  (void)state;
  got_t *g = decode("2051",
                    "DataTime=20261120150000;a34002-Min=40.1,a34002-Avg=88.5,a34002-Max=120,"
                    "a34002-Flag=N;LA-Min=51.0,LA-Avg=63.25,LA-Max=77.5,LA-Flag=N;a01001-Flag=B;"
                    "a99999-Avg=5,a99999-Flag=N",
                    false, 0);
  assert_int_equal(g->n, 1);
  assert_string_equal(g->table[0], "rx_env_minute");
  assert_int_equal(g->t[0], 1763622000);
  assert_string_equal(val(g, 0, "a34002_min"), "40.1");
  assert_string_equal(val(g, 0, "a34002_avg"), "88.5");
  assert_string_equal(val(g, 0, "a34002_max"), "120");
  assert_string_equal(val(g, 0, "a34002_flag"), "N");
  assert_string_equal(val(g, 0, "la_min"), "51");
  assert_string_equal(val(g, 0, "la_avg"), "63.25");
  assert_string_equal(val(g, 0, "la_max"), "77.5");
  assert_string_equal(val(g, 0, "la_flag"), "N");
  /* a pollutant with no data in the minute: its flag alone */
  assert_string_equal(val(g, 0, "a01001_avg"), "NULL");
  assert_string_equal(val(g, 0, "a01001_flag"), "B");
  /* one not sent: all NULL */
  assert_string_equal(val(g, 0, "a34001_avg"), "NULL");
  assert_string_equal(val(g, 0, "a34001_flag"), "NULL");
  /* one the receiver has no column for (a99999) stays in the frame only */
  for (const rx_col_t *c = stor__rx_tables[0].cols; c->name; c++)
    assert_null(strstr(c->key, "a99999"));
}

static void hour_frame_goes_to_its_own_table(void **state) {
  (void)state;
  got_t *g = decode("2061", "DataTime=20261120150000;a34002-Avg=70,a34002-Flag=N", false, 0);
  assert_int_equal(g->n, 1);
  assert_string_equal(g->table[0], "rx_env_hour");
  /* nothing the table has a column for: no row */
  assert_int_equal(decode("2061", "DataTime=20261120150000;a99999-Avg=70", false, 0)->n, 0);
}

static void number_that_is_not_a_decimal_becomes_null(void **state) {
  (void)state;
  got_t *g = decode("2051",
                    "DataTime=20261120150000;a34002-Min=0x10,a34002-Avg=inf,a34002-Max=1e400,"
                    "a34002-Flag=N;LA-Min=1e39,LA-Avg=-1e-39,LA-Max=3.4e38",
                    false, 0);
  assert_int_equal(g->n, 1);
  assert_string_equal(val(g, 0, "a34002_min"), "NULL");
  assert_string_equal(val(g, 0, "a34002_avg"), "NULL");
  assert_string_equal(val(g, 0, "a34002_max"), "NULL");
  assert_string_equal(val(g, 0, "a34002_flag"), "N");
  /* beyond what PostgreSQL's REAL holds (it would refuse the batch) */
  assert_string_equal(val(g, 0, "la_min"), "NULL");
  assert_string_equal(val(g, 0, "la_avg"), "NULL");
  assert_string_equal(val(g, 0, "la_max"), "3.4e+38");
}

static void waste_ticket_gives_one_row_with_free_text_unescaped(void **state) {
  (void)state;
  got_t *g = decode("6011",
                    "Seq=18,Prev=00,DataTime=20261120151230,LedgerId=1042,Source=scale,"
                    "Scale=wb-01,TicketNo=1042,Plate=黑A12345,Category=engineering,Kind=concrete,"
                    "GrossKg=31800,TareKg=14200,NetKg=17600,Dest=recycling;DestName=Harbin%20yard"
                    "%3B gate 2;LedgerHash=AB,Hash=CD,Sig=EF",
                    true, 18);
  assert_int_equal(g->n, 1);
  assert_string_equal(g->table[0], "rx_waste");
  assert_int_equal(g->seq[0], 18);
  assert_string_equal(val(g, 0, "ledger_id"), "1042");
  assert_string_equal(val(g, 0, "plate"), "黑A12345");
  assert_string_equal(val(g, 0, "net_kg"), "17600");
  assert_string_equal(val(g, 0, "dest"), "recycling");
  assert_string_equal(val(g, 0, "dest_name"), "Harbin yard; gate 2");
  assert_string_equal(val(g, 0, "ledger_hash"), "AB");
  assert_string_equal(val(g, 0, "carrier"), "NULL");
  assert_string_equal(val(g, 0, "corrects"), "NULL");
}

static void energy_gives_the_site_day_and_a_row_per_unit(void **state) {
  (void)state;
  got_t *g = decode("6031",
                    "Seq=21,Prev=00,DataTime=20261120000000,EnergyKwh=1520.5,FuelL=310.2,"
                    "CarbonKg=1683.0,EfGrid=0.5703,EfFuel=2.63;EqId=tc-01,EnergyKwh=820.1,FuelL=0,"
                    "RunS=30120;EqId=ex-02,EnergyKwh=0,FuelL=210.0,RunS=25100;Hash=AA,Sig=BB",
                    true, 21);
  assert_int_equal(g->n, 3);
  assert_string_equal(g->table[0], "rx_energy");
  assert_string_equal(val(g, 0, "energy_kwh"), "1520.5");
  assert_string_equal(val(g, 0, "carbon_kg"), "1683");
  assert_string_equal(g->table[1], "rx_energy_equipment");
  assert_string_equal(val(g, 1, "eq_id"), "tc-01");
  assert_string_equal(val(g, 1, "energy_kwh"), "820.1");
  assert_string_equal(val(g, 2, "eq_id"), "ex-02");
  assert_string_equal(val(g, 2, "fuel_l"), "210");
  assert_int_equal(g->seq[2], 21);
}

static void alarm_keeps_rule_and_figures(void **state) {
  (void)state;
  got_t *g = decode("6021",
                    "Seq=20,Prev=00,DataTime=20261120221500,AlarmId=417,State=on,Level=alarm,"
                    "Rule=noise.laeq,Device=noise-01,PolId=LA,Value=58.30,Limit=55.00,WindowS=1200,"
                    "Hash=AA,Sig=BB",
                    true, 20);
  assert_int_equal(g->n, 1);
  assert_string_equal(val(g, 0, "rule"), "noise.laeq");
  assert_string_equal(val(g, 0, "value"), "58.3");
  assert_string_equal(val(g, 0, "limit_value"), "55");
  assert_string_equal(val(g, 0, "window_s"), "1200");
}

/* protocol/UPLINK.md's 6051 example: the row after the change, the free
 * text of the records that follow it. */
static void machinery_register_change_gives_the_row_after_it(void **state) {
  (void)state;
  got_t *g = decode("6051",
                    "Seq=23,Prev=00,DataTime=20261120081500,AuditId=12,Code=23010100000103,"
                    "Action=change,Stage=III,PowerKw=198.0,Fuel=diesel,Label=yellow,"
                    "Terminal=rig-01;Type=旋挖钻机;Owner=黑龙江宏基桩基工程有限公司;By=王工;"
                    "Reason=换装国三发动机;Hash=AA,Sig=BB",
                    true, 23);
  assert_int_equal(g->n, 1);
  assert_string_equal(g->table[0], "rx_machinery_register");
  assert_int_equal(g->seq[0], 23);
  assert_string_equal(val(g, 0, "audit_id"), "12");
  assert_string_equal(val(g, 0, "code"), "23010100000103");
  assert_string_equal(val(g, 0, "action"), "change");
  assert_string_equal(val(g, 0, "stage"), "III");
  assert_string_equal(val(g, 0, "power_kw"), "198");
  assert_string_equal(val(g, 0, "fuel"), "diesel");
  assert_string_equal(val(g, 0, "label"), "yellow");
  assert_string_equal(val(g, 0, "terminal"), "rig-01");
  assert_string_equal(val(g, 0, "machine_type"), "旋挖钻机");
  assert_string_equal(val(g, 0, "owner"), "黑龙江宏基桩基工程有限公司");
  assert_string_equal(val(g, 0, "changed_by"), "王工");
  assert_string_equal(val(g, 0, "reason"), "换装国三发动机");
  /* a retirement carries no row: its columns are NULL */
  g = decode("6051",
             "Seq=24,Prev=00,DataTime=20261121081500,AuditId=13,Code=23010100000103,"
             "Action=retire;By=王工;Reason=退场;Hash=AA,Sig=BB",
             true, 24);
  assert_int_equal(g->n, 1);
  assert_string_equal(val(g, 0, "action"), "retire");
  assert_string_equal(val(g, 0, "stage"), "NULL");
  assert_string_equal(val(g, 0, "power_kw"), "NULL");
  assert_string_equal(val(g, 0, "reason"), "退场");
}

static void machinery_gate_pass_gives_one_row(void **state) {
  (void)state;
  got_t *g = decode("6052",
                    "Seq=24,Prev=00,DataTime=20261120064512,MoveId=31,Code=23010100000103,Dir=in,"
                    "Source=gate,Gate=gate-01,GateNo=20420000;By=gate-01;Hash=AA,Sig=BB",
                    true, 24);
  assert_int_equal(g->n, 1);
  assert_string_equal(g->table[0], "rx_machinery_moves");
  assert_string_equal(val(g, 0, "move_id"), "31");
  assert_string_equal(val(g, 0, "dir"), "in");
  assert_string_equal(val(g, 0, "source"), "gate");
  assert_string_equal(val(g, 0, "gate"), "gate-01");
  assert_string_equal(val(g, 0, "gate_no"), "20420000");
  assert_string_equal(val(g, 0, "moved_by"), "gate-01");
}

/* protocol/UPLINK.md's 6053 example: the site's sums, then one row per
 * machine; what a machine's terminal did not report stays NULL. */
static void machinery_day_gives_the_site_and_a_row_per_machine(void **state) {
  (void)state;
  got_t *g = decode("6053",
                    "Seq=25,Prev=00,DataTime=20261120000000,Machines=2,FuelL=108.9,Co2Kg=286.5,"
                    "EfFuel=2.6300;Code=23010100000104,Stage=III,PowerKw=55.0,OnsiteH=24.00,"
                    "EngineH=16.50,IdleShare=0.25,FuelL=108.9,Co2Kg=286.5,NoxKg=1.815,"
                    "PmKg=0.1234;Code=X-1,Registered=0,OnsiteH=2.50,Co2Kg=0.0,NoxKg=0.000,"
                    "PmKg=0.0000;Hash=AA,Sig=BB",
                    true, 25);
  assert_int_equal(g->n, 3);
  assert_string_equal(g->table[0], "rx_machinery_day");
  assert_string_equal(val(g, 0, "machines"), "2");
  assert_string_equal(val(g, 0, "fuel_l"), "108.9");
  assert_string_equal(val(g, 0, "co2_kg"), "286.5");
  assert_string_equal(val(g, 0, "ef_fuel"), "2.63");
  assert_string_equal(g->table[1], "rx_machinery_day_machine");
  assert_string_equal(val(g, 1, "code"), "23010100000104");
  assert_string_equal(val(g, 1, "registered"), "NULL");
  assert_string_equal(val(g, 1, "stage"), "III");
  assert_string_equal(val(g, 1, "engine_h"), "16.5");
  assert_string_equal(val(g, 1, "idle_share"), "0.25");
  assert_string_equal(val(g, 1, "nox_kg"), "1.815");
  assert_string_equal(val(g, 1, "pm_kg"), "0.1234");
  assert_string_equal(g->table[2], "rx_machinery_day_machine");
  assert_string_equal(val(g, 2, "code"), "X-1");
  assert_string_equal(val(g, 2, "registered"), "0");
  assert_string_equal(val(g, 2, "onsite_h"), "2.5");
  assert_string_equal(val(g, 2, "engine_h"), "NULL");
  assert_string_equal(val(g, 2, "fuel_l"), "NULL");
  assert_int_equal(g->seq[2], 25);
}

/* protocol/UPLINK.md's 6061 example: one row, the name unescaped; a
 * profile without coordinates leaves them NULL. */
static void site_profile_gives_one_row_with_areas_and_coordinates(void **state) {
  (void)state;
  got_t *g = decode("6061",
                    "Seq=1,Prev=00,DataTime=20261120080000,Name=松北示范工地%2C 1#楼,"
                    "AreaCastM2=38000.0,AreaPrefabM2=24000.0,Lat=45.803200,Lon=126.535000,"
                    "Hash=AA,Sig=BB",
                    true, 1);
  assert_int_equal(g->n, 1);
  assert_string_equal(g->table[0], "rx_site_profile");
  assert_int_equal(g->seq[0], 1);
  assert_string_equal(val(g, 0, "name"), "松北示范工地, 1#楼");
  assert_string_equal(val(g, 0, "area_cast_m2"), "38000");
  assert_string_equal(val(g, 0, "area_prefab_m2"), "24000");
  assert_string_equal(val(g, 0, "latitude"), "45.8032");
  assert_string_equal(val(g, 0, "longitude"), "126.535");
  g = decode("6061",
             "Seq=2,Prev=00,DataTime=20261121080000,Name=,AreaCastM2=38000.0,"
             "AreaPrefabM2=26000.5,Hash=AA,Sig=BB",
             true, 2);
  assert_int_equal(g->n, 1);
  assert_string_equal(val(g, 0, "area_prefab_m2"), "26000.5");
  assert_string_equal(val(g, 0, "latitude"), "NULL");
  assert_string_equal(val(g, 0, "longitude"), "NULL");
}

static int count_row(void *arg, const stor_rx_cols_t *row) {
  (void)row;
  ++*(int *)arg;
  return 0;
}

/* A SQLite database made before rx_site_profile (here: dropped again) gets
 * it at the next open, and the console's site question, which reads the
 * profile, runs over it. */
static void sqlite_database_from_before_gets_the_site_profile_table(void **state) {
  (void)state;
  char dir[] = "/tmp/test_rxdecode.XXXXXX", path[64], cmd[160], err[256];
  assert_non_null(mkdtemp(dir));
  snprintf(path, sizeof(path), "%s/rx.db", dir);
  stor_rx_t *db = NULL;
  assert_int_equal(stor_rx_open(path, &db), 0);
  stor_rx_close(db);
  snprintf(cmd, sizeof(cmd), "sqlite3 %s 'DROP TABLE rx_site_profile'", path);
  assert_int_equal(system(cmd), 0);
  int n = 0;
  assert_int_not_equal(stor_rx_report_sites(path, 0, 1, count_row, &n, err, sizeof(err)), 0);
  assert_int_equal(stor_rx_open(path, &db), 0);
  stor_rx_close(db);
  assert_int_equal(stor_rx_report_sites(path, 0, 1, count_row, &n, err, sizeof(err)), 0);
  assert_int_equal(n, 0);
  snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
  assert_int_equal(system(cmd), 0);
}

static void bytes_that_are_not_utf8_become_question_marks(void **state) {
  (void)state;
  got_t *g = decode("6021", "Seq=1,DataTime=20261120221500,Rule=a\xff\xc3z%E9,Hash=AA", true, 1);
  assert_int_equal(g->n, 1);
  assert_string_equal(val(g, 0, "rule"), "a??z?");
}

static void unsigned_ledger_cn_and_timeless_message_give_no_rows(void **state) {
  (void)state;
  assert_int_equal(decode("6011", "DataTime=20261120151230,NetKg=1", false, 0)->n, 0);
  assert_int_equal(
      decode("2081", "DataTime=20261120151230;RestartTime=20261120151230", false, 0)->n, 0);
  got_t g = {0};
  stor_rx_msg_t m = {.t = -1, .cp = "a34002-Avg=1", .cp_len = 12};
  snprintf(m.cn, sizeof(m.cn), "2051");
  assert_int_equal(stor__rx_decode(&m, collect, &g), 0);
  assert_int_equal(g.n, 0);
}

static int stop_at_first(void *arg, const rx_row_t *r) {
  (void)r;
  (*(int *)arg)++;
  return -EIO;
}

static void callback_error_stops_the_decoding(void **state) {
  (void)state;
  int calls = 0;
  stor_rx_msg_t m = {
      .t = 0, .is_signed = true, .cp = "Seq=1,EnergyKwh=1;EqId=a;EqId=b", .cp_len = 31};
  snprintf(m.cn, sizeof(m.cn), "6031");
  assert_int_equal(stor__rx_decode(&m, stop_at_first, &calls), -EIO);
  assert_int_equal(calls, 1);
}

static void sql_is_made_from_the_table(void **state) {
  (void)state;
  char sql[4096];
  const rx_table_t *minute = &stor__rx_tables[0], *waste = &stor__rx_tables[3];
  assert_string_equal(minute->name, "rx_env_minute");
  assert_string_equal(waste->name, "rx_waste");
  assert_true(stor__rx_table_sql(minute, true, sql, sizeof(sql)) > 0);
  assert_non_null(
      strstr(sql, "t BIGINT NOT NULL, a34001_min REAL, a34001_avg REAL, a34001_max REAL,"));
  assert_non_null(strstr(sql, "la_max REAL, a34001_flag TEXT,"));
  assert_non_null(strstr(sql, "la_flag TEXT, PRIMARY KEY(mn, t)) PARTITION BY RANGE (t);"));
  assert_true(stor__rx_table_sql(minute, false, sql, sizeof(sql)) > 0);
  assert_null(strstr(sql, "PARTITION"));
  assert_true(stor__rx_table_sql(waste, true, sql, sizeof(sql)) > 0);
  assert_non_null(strstr(sql, "seq BIGINT NOT NULL, qn TEXT NOT NULL, ledger_id BIGINT"));
  assert_non_null(strstr(sql, "CREATE INDEX IF NOT EXISTS rx_waste_mn_t ON rx_waste(mn, t);"));
  assert_int_equal(stor__rx_insert_sql(minute, sql, sizeof(sql)), 2 + 9 * 4);
  assert_non_null(strstr(sql, "INSERT INTO rx_env_minute(mn, t, a34001_min, a34001_avg, "));
  assert_non_null(strstr(sql, ",$37,$38) ON CONFLICT DO NOTHING"));
  assert_int_equal(stor__rx_insert_sql(minute, sql, 20), -ENOSPC);
  /* the conversion from version 2's row per pollutant */
  assert_true(stor__rx_convert_sql(minute, "old", sql, sizeof(sql)) > 0);
  assert_non_null(strstr(sql, "INSERT INTO rx_env_minute(mn, t, a34001_min, "));
  assert_non_null(strstr(sql, ") SELECT mn, t, MAX(CASE WHEN pol='a34001' THEN vmin END), "));
  assert_non_null(strstr(sql, ", MAX(CASE WHEN pol='LA' THEN vmax END), "));
  assert_non_null(strstr(sql, ", MAX(CASE WHEN pol='LA' THEN flag END) FROM old GROUP BY mn, t"));
  assert_int_equal(stor__rx_convert_sql(minute, "old", sql, 100), -ENOSPC);
  assert_int_equal(stor__rx_convert_sql(waste, "old", sql, sizeof(sql)), -EINVAL);
}

static void months_are_beijing_months(void **state) {
  (void)state;
  char name[16];
  /* 2026-11-30 16:30 UTC is 2026-12-01 00:30 in Beijing: December */
  int64_t t = 1796056200;
  assert_int_equal(stor__rx_month_start(t, 0, name), 1796054400); /* 2026-11-30 16:00 UTC */
  assert_string_equal(name, "202612");
  assert_int_equal(stor__rx_month_start(t, 1, name), 1798732800); /* 2026-12-31 16:00 UTC */
  assert_string_equal(name, "202701");
  assert_int_equal(stor__rx_month_start(t, -12, name), 1764518400); /* 2025-11-30 16:00 UTC */
  assert_string_equal(name, "202512");
  /* a second earlier it is still November in Beijing */
  assert_int_equal(stor__rx_month_start(1796054399, 0, name),
                   1793462400); /* 2026-10-31 16:00 UTC */
  assert_string_equal(name, "202611");
}

/* ---- a stored message rebuilt (the backfill) */

static void split_message_is_rebuilt_as_the_receiver_assembled_it(void **state) {
  (void)state;
  const char *segs[] = {
      "QN=20261120213000003;ST=39;CN=6031;PW=123456;MN=HLJ-HRB-0001;Flag=7;PNUM=2;PNO=1;"
      "CP=&&Seq=3,Prev=00,DataTime=20261120000000,EnergyKwh=1520.5;EqId=eq-01,RunS=10&&",
      "QN=20261120213000003;ST=39;CN=6031;PW=123456;MN=HLJ-HRB-0001;Flag=7;PNUM=2;PNO=2;"
      "CP=&&EqId=eq-02,RunS=20;Hash=AB,Sig=CD&&"};
  size_t lens[] = {strlen(segs[0]), strlen(segs[1])};
  stor_rx_msg_t m = {0};
  char err[128];
  assert_int_equal(stor__rx_rebuild(segs, lens, 2, &m, err, sizeof(err)), 0);
  assert_string_equal(m.mn, "HLJ-HRB-0001");
  assert_string_equal(m.qn, "20261120213000003");
  assert_string_equal(m.cn, "6031");
  assert_string_equal(m.st, "39");
  assert_string_equal(m.pw, "123456");
  assert_int_equal(m.flag, 7);
  assert_int_equal(m.npackets, 2);
  /* 2026-11-20 00:00 in Beijing is 11-19 16:00 UTC */
  assert_int_equal(m.t, 1795104000);
  /* the CPs joined by ';', as rxserver.c's packet() joins them */
  assert_string_equal(m.cp, "Seq=3,Prev=00,DataTime=20261120000000,EnergyKwh=1520.5;"
                            "EqId=eq-01,RunS=10;EqId=eq-02,RunS=20;Hash=AB,Sig=CD");
  assert_int_equal(m.cp_len, strlen(m.cp));
  assert_int_equal(m.packets_len, lens[0] + lens[1] + 4);
  assert_memory_equal(m.packets, segs[0], lens[0]);
  assert_memory_equal(m.packets + lens[0], "\r\n", 2);
  assert_memory_equal(m.packets + lens[0] + 2, segs[1], lens[1]);
  assert_string_equal(m.packets + lens[0] + 2 + lens[1], "\r\n");
  /* and it decodes into a row per unit, both packets' */
  got_t g = {0};
  m.is_signed = true;
  m.sig.seq = 3;
  assert_int_equal(stor__rx_decode(&m, collect, &g), 0);
  assert_int_equal(g.n, 3);
  assert_string_equal(g.table[0], "rx_energy");
  assert_string_equal(val(&g, 0, "energy_kwh"), "1520.5");
  assert_string_equal(val(&g, 2, "eq_id"), "eq-02");
  assert_string_equal(val(&g, 2, "run_s"), "20");
  free(m.packets);
  free(m.cp);
}

static void single_packet_keeps_its_cp_as_sent_and_no_datatime_is_minus_one(void **state) {
  (void)state;
  const char *seg = "QN=20261120212000001;ST=39;CN=2051;PW=123456;MN=S1;Flag=5;"
                    "CP=&&a34002-Avg=70.0;Note=a%2Cb&&";
  size_t len = strlen(seg);
  stor_rx_msg_t m = {0};
  char err[128];
  assert_int_equal(stor__rx_rebuild(&seg, &len, 1, &m, err, sizeof(err)), 0);
  assert_int_equal(m.t, -1);
  assert_string_equal(m.cp, "a34002-Avg=70.0;Note=a%2Cb");
  assert_int_equal(m.npackets, 1);
  free(m.packets);
  free(m.cp);
}

static void stored_bytes_that_are_no_data_segment_are_refused_with_the_reason(void **state) {
  (void)state;
  const char *junk = "not a segment at all", *nul = "QN=1;ST=39;CN=2051;PW=1;MN=S\0;CP=&&&&",
             *one = "QN=1;ST=39;CN=6031;PW=1;MN=S1;Flag=7;PNUM=2;PNO=1;CP=&&Seq=1&&",
             *two = "QN=1;ST=39;CN=6031;PW=1;MN=S1;Flag=7;PNUM=2;PNO=2;CP=&&Hash=1&&";
  size_t jlen = strlen(junk), nlen = 34, len1 = strlen(one), len2 = strlen(two);
  char err[128];
  stor_rx_msg_t m = {0};
  assert_int_equal(stor__rx_rebuild(&junk, &jlen, 1, &m, err, sizeof(err)), -EBADMSG);
  assert_non_null(strstr(err, "packet 1: "));
  assert_null(m.packets);
  assert_null(m.cp);
  assert_int_equal(stor__rx_rebuild(&nul, &nlen, 1, &m, err, sizeof(err)), -EBADMSG);
  assert_string_equal(err, "packet 1: not a data segment (over 1024 bytes or holding a NUL)");
  /* packets in another order than their PNOs, or one twice */
  const char *swapped[] = {two, one}, *twice[] = {one, one};
  size_t lens_swapped[] = {len2, len1}, lens_twice[] = {len1, len1}, lens[] = {len1, len2};
  assert_int_equal(stor__rx_rebuild(swapped, lens_swapped, 2, &m, err, sizeof(err)), -EBADMSG);
  assert_string_equal(err, "packet 1: PNO out of place");
  assert_int_equal(stor__rx_rebuild(twice, lens_twice, 2, &m, err, sizeof(err)), -EBADMSG);
  assert_string_equal(err, "packet 2: PNO out of place");
  assert_null(m.packets);
  /* in order they make the message */
  const char *both[] = {one, two};
  assert_int_equal(stor__rx_rebuild(both, lens, 2, &m, err, sizeof(err)), 0);
  assert_string_equal(m.cp, "Seq=1;Hash=1");
  free(m.packets);
  free(m.cp);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(minute_frame_gives_one_wide_row),
      cmocka_unit_test(hour_frame_goes_to_its_own_table),
      cmocka_unit_test(number_that_is_not_a_decimal_becomes_null),
      cmocka_unit_test(waste_ticket_gives_one_row_with_free_text_unescaped),
      cmocka_unit_test(energy_gives_the_site_day_and_a_row_per_unit),
      cmocka_unit_test(alarm_keeps_rule_and_figures),
      cmocka_unit_test(machinery_register_change_gives_the_row_after_it),
      cmocka_unit_test(machinery_gate_pass_gives_one_row),
      cmocka_unit_test(machinery_day_gives_the_site_and_a_row_per_machine),
      cmocka_unit_test(site_profile_gives_one_row_with_areas_and_coordinates),
      cmocka_unit_test(sqlite_database_from_before_gets_the_site_profile_table),
      cmocka_unit_test(bytes_that_are_not_utf8_become_question_marks),
      cmocka_unit_test(unsigned_ledger_cn_and_timeless_message_give_no_rows),
      cmocka_unit_test(callback_error_stops_the_decoding),
      cmocka_unit_test(sql_is_made_from_the_table),
      cmocka_unit_test(months_are_beijing_months),
      cmocka_unit_test(split_message_is_rebuilt_as_the_receiver_assembled_it),
      cmocka_unit_test(single_packet_keeps_its_cp_as_sent_and_no_datatime_is_minus_one),
      cmocka_unit_test(stored_bytes_that_are_no_data_segment_are_refused_with_the_reason),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
