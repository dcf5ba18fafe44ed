/**
 * The edge to the outside world's libraries: imapflow (one Mailbox per connection), nodemailer (SMTP, MIME), OAuth2
 * token endpoints, durable file writes, outside text capped for keeping (text.ts). Nothing else imports those
 * libraries; errors come out as MailError with a class.
 */
