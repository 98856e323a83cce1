#include "amqp_login_shim.h"
#include <amqp.h>

void tributary_amqp_login_plain(void *connection, const char *vhost, int channel_max, int frame_max,
                                int heartbeat_seconds, const char *user, const char *password, void *reply) {
    *(amqp_rpc_reply_t *)reply = amqp_login((amqp_connection_state_t)connection, vhost, channel_max, frame_max,
                                            heartbeat_seconds, AMQP_SASL_METHOD_PLAIN, user, password);
}
