#ifndef TRIBUTARY_AMQP_LOGIN_SHIM_H
#define TRIBUTARY_AMQP_LOGIN_SHIM_H

/// Non-variadic wrapper around librabbitmq-c's variadic `amqp_login` (Swift cannot call C variadics).
/// `connection` is an `amqp_connection_state_t`; `reply` points to an `amqp_rpc_reply_t` the caller owns.
/// Opaque pointers keep the librabbitmq types owned by the CRabbitMQ module alone.
void tributary_amqp_login_plain(void *connection, const char *vhost, int channel_max, int frame_max,
                                int heartbeat_seconds, const char *user, const char *password, void *reply);

#endif
