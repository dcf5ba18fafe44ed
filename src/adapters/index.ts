/**
 * The edge to the outside world's libraries: imapflow (one Mailbox per connection), nodemailer (SMTP, MIME), OAuth2
 * token endpoints, durable file writes. Nothing else imports those libraries; errors come out as MailError with a class.
 */
