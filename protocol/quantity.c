/* Quantities and their units.
 *
 * Every quantity sitegate stores has one canonical unit (PROTO_QUANTITY_MAP in
 * protocol.h); sensors may send any other unit of the same dimension and the
 * decoders convert it here, so storage and rules only ever see canonical
 * values. A unit is a row of one table: its dimension and the affine map
 * to the canonical unit. Unit names are SenML's (RFC 8428
 * section 12.1, RFC 8798 secondary units) plus a few spellings field devices
 * are known to send ("L", "dBA", "degF"). */
#include "protocol/protocol.h"

#include <errno.h>
#include <string.h>

enum dim {
  DIM_NONE, /* `on`: a boolean has no unit */
  DIM_CONCENTRATION,
  DIM_TEMPERATURE,
  DIM_HUMIDITY,
  DIM_PRESSURE,
  DIM_SPEED,
  DIM_ANGLE,
  DIM_LEVEL,
  DIM_POWER,
  DIM_ENERGY,
  DIM_VOLUME,
  DIM_DURATION, /* engine hours (a cumulative counter) */
  DIM_OPACITY,  /* smoke: light absorption coefficient, GB 36886-2018 */
  DIM_COUNT
};

static const uint8_t quantity_dim[PROTO_Q_COUNT] = {
    [PROTO_Q_TSP] = DIM_CONCENTRATION,
    [PROTO_Q_PM10] = DIM_CONCENTRATION,
    [PROTO_Q_PM2_5] = DIM_CONCENTRATION,
    [PROTO_Q_TEMP] = DIM_TEMPERATURE,
    [PROTO_Q_RH] = DIM_HUMIDITY,
    [PROTO_Q_PRESSURE] = DIM_PRESSURE,
    [PROTO_Q_WIND_SPEED] = DIM_SPEED,
    [PROTO_Q_WIND_DIR] = DIM_ANGLE,
    [PROTO_Q_LA] = DIM_LEVEL,
    [PROTO_Q_LAMAX] = DIM_LEVEL,
    [PROTO_Q_POWER] = DIM_POWER,
    [PROTO_Q_ENERGY] = DIM_ENERGY,
    [PROTO_Q_FUEL] = DIM_VOLUME,
    [PROTO_Q_ON] = DIM_NONE,
    [PROTO_Q_ENGINE_H] = DIM_DURATION,
    [PROTO_Q_OPACITY] = DIM_OPACITY,
    [PROTO_Q_IDLE_H] = DIM_DURATION,
};

/* What an error message offers instead of a unit that was refused; the unit
 * tests check that every name listed here converts. */
static const char *const dim_units[DIM_COUNT] = {
    [DIM_NONE] = "none (boolean)",
    [DIM_CONCENTRATION] = "ug/m3, mg/m3, kg/m3",
    [DIM_TEMPERATURE] = "Cel, K, degF",
    [DIM_HUMIDITY] = "%RH, %, /",
    [DIM_PRESSURE] = "kPa, Pa, hPa, mbar, bar",
    [DIM_SPEED] = "m/s, km/h",
    [DIM_ANGLE] = "deg, rad",
    [DIM_LEVEL] = "dB, dBA",
    [DIM_POWER] = "kW, W, MW",
    [DIM_ENERGY] = "kWh, Wh, MWh, J",
    [DIM_VOLUME] = "l, L, ml, mL, m3",
    [DIM_DURATION] = "h, min, s",
    [DIM_OPACITY] = "1/m, m-1",
};

#define PI 3.14159265358979323846

/* canonical = (value + offset) * mul / div. Keeping mul and div apart makes
 * decimal readings exact where they can be: 1500 W is 1500 / 1000 = 1.5 kW,
 * not 1500 * 0.001 = 1.5000000000000002. */
static const struct unit {
  char name[6];
  uint8_t dim;
  double offset, mul, div;
} units[] = {
    /* name     dimension          offset    mul     div */
    {"ug/m3", DIM_CONCENTRATION, 0, 1, 1},
    {"mg/m3", DIM_CONCENTRATION, 0, 1e3, 1},
    {"kg/m3", DIM_CONCENTRATION, 0, 1e9, 1}, /* RFC 8428 12.1 */
    {"Cel", DIM_TEMPERATURE, 0, 1, 1},
    {"K", DIM_TEMPERATURE, -273.15, 1, 1}, /* ITS-90: 0 Cel = 273.15 K */
    {"degF", DIM_TEMPERATURE, -32, 5, 9},
    {"%RH", DIM_HUMIDITY, 0, 1, 1},
    {"%", DIM_HUMIDITY, 0, 1, 1},
    {"/", DIM_HUMIDITY, 0, 100, 1}, /* RFC 8428 12.1: "/" is a ratio, 0..1 */
    {"kPa", DIM_PRESSURE, 0, 1, 1},
    {"Pa", DIM_PRESSURE, 0, 1, 1e3},
    {"hPa", DIM_PRESSURE, 0, 1, 10},
    {"mbar", DIM_PRESSURE, 0, 1, 10},
    {"bar", DIM_PRESSURE, 0, 100, 1},
    {"m/s", DIM_SPEED, 0, 1, 1},
    {"km/h", DIM_SPEED, 0, 1, 3.6},
    {"deg", DIM_ANGLE, 0, 1, 1},
    {"rad", DIM_ANGLE, 0, 180, PI},
    {"dB", DIM_LEVEL, 0, 1, 1},
    {"dBA", DIM_LEVEL, 0, 1, 1}, /* A weighting is implied (GB 12523-2011) */
    {"kW", DIM_POWER, 0, 1, 1},
    {"W", DIM_POWER, 0, 1, 1e3},
    {"MW", DIM_POWER, 0, 1e3, 1},
    {"kWh", DIM_ENERGY, 0, 1, 1},
    {"Wh", DIM_ENERGY, 0, 1, 1e3},
    {"MWh", DIM_ENERGY, 0, 1e3, 1},
    {"J", DIM_ENERGY, 0, 1, 3.6e6}, /* 1 kWh = 3.6 MJ */
    {"l", DIM_VOLUME, 0, 1, 1},
    {"L", DIM_VOLUME, 0, 1, 1},
    {"ml", DIM_VOLUME, 0, 1, 1e3},
    {"mL", DIM_VOLUME, 0, 1, 1e3},
    {"m3", DIM_VOLUME, 0, 1e3, 1},
    {"h", DIM_DURATION, 0, 1, 1},
    {"min", DIM_DURATION, 0, 1, 60},
    {"s", DIM_DURATION, 0, 1, 3600},
    {"1/m", DIM_OPACITY, 0, 1, 1},
    {"m-1", DIM_OPACITY, 0, 1, 1}, /* as GB 36886-2018 writes m⁻¹ */
};

static const char *const quantity_names[PROTO_Q_COUNT] = {
#define X(e, name, unit, level) name,
    PROTO_QUANTITY_MAP(X)
#undef X
};

static const char *const quantity_units[PROTO_Q_COUNT] = {
#define X(e, name, unit, level) unit,
    PROTO_QUANTITY_MAP(X)
#undef X
};

static const bool quantity_levels[PROTO_Q_COUNT] = {
#define X(e, name, unit, level) level,
    PROTO_QUANTITY_MAP(X)
#undef X
};

const char *proto_quantity_name(int q) {
  return (q >= 0 && q < PROTO_Q_COUNT) ? quantity_names[q] : NULL;
}

const char *proto_quantity_unit(int q) {
  return (q >= 0 && q < PROTO_Q_COUNT) ? quantity_units[q] : NULL;
}

bool proto_quantity_is_level(int q) { return q >= 0 && q < PROTO_Q_COUNT && quantity_levels[q]; }

int proto_quantity_from_name(const char *name) {
  if (name == NULL)
    return -1;
  for (int q = 0; q < PROTO_Q_COUNT; q++)
    if (strcmp(name, quantity_names[q]) == 0)
      return q;
  return -1;
}

const char *proto_quantity_units(int q) {
  return (q >= 0 && q < PROTO_Q_COUNT) ? dim_units[quantity_dim[q]] : NULL;
}

int proto_unit_to_canonical(int q, const char *unit, size_t len, double *v) {
  if (q < 0 || q >= PROTO_Q_COUNT || quantity_dim[q] == DIM_NONE)
    return -EINVAL;
  for (size_t i = 0; i < sizeof(units) / sizeof(units[0]); i++) {
    const struct unit *u = &units[i];
    if (u->dim == quantity_dim[q] && strlen(u->name) == len && memcmp(u->name, unit, len) == 0) {
      double x = *v + u->offset;
      if (u->mul != 1)
        x *= u->mul;
      if (u->div != 1)
        x /= u->div;
      *v = x;
      return 0;
    }
  }
  return -EINVAL;
}
