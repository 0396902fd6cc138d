# engine.pl - the Perl half of mailprocd's embedded SpamAssassin engine.
#
# Compiled into the daemon as a C string (see embed_pl.py and meson.build)
# and evaluated once by perl_embed.c.  engine.c calls the subs below through
# perl_embed's pl_call(); every sub dies with a one-line reason on error.
#
#   load(network_tests, timeout_s, site_config_dir)   in the spawner, as root
#   user(name, home)                                  in a worker, as the user
#   check(message)   -> (is_spam, score, required, tests, headers, timed_out,
#                        autolearned)
#   learn(message, is_spam) -> 1 learned, 0 already known
#   sync()           Bayes journal -> database
#   finish()
#
# SpamAssassin's own log lines (warnings, errors, info) go to mailprocd's
# log through Mailprocd::Spam::c_log, an XS sub defined by perl_embed.c.
package Mailprocd::Spam;

use strict;
use warnings;

use File::Path ();
use File::Temp ();
use Time::HiRes ();
use Mail::SpamAssassin;
use Mail::SpamAssassin::Logger ();

our $sa;          # the one Mail::SpamAssassin object of this process
our $timeout;     # seconds a check may take, 0 none (users may only lower it)
our $user;        # set by user(): checks and learning need it

# A SpamAssassin log method that hands lines to the C logger.
{
	package Mail::SpamAssassin::Logger::Mailprocd;
	sub new { my ($class) = @_; return bless {}, $class; }
	sub log_message {
		my ($self, $level, $msg) = @_;
		Mailprocd::Spam::c_log($level, $msg);
	}
	sub close_log { }
}
$INC{'Mail/SpamAssassin/Logger/Mailprocd.pm'} = __FILE__;
Mail::SpamAssassin::Logger::add(method => 'mailprocd');
Mail::SpamAssassin::Logger::remove('stderr');
Mail::SpamAssassin::Logger::add_facilities('info');   # info and up, no debug
$SIG{__WARN__} = sub { Mail::SpamAssassin::Logger::log_message('warn', $_[0]); };

# A die message without Perl's " at FILE line N." tail and on one line.
sub reason {
	my ($e) = @_;
	$e = "$e";
	$e =~ s/\s+at \S+ line \d+\.?\s*\z//;
	$e =~ s/\s*\n\s*/; /g;
	$e =~ s/;?\s*\z//;
	return $e eq '' ? 'unknown error' : $e;
}

sub load {
	my ($network_tests, $timeout_s, $site_dir) = @_;
	die "SpamAssassin is loaded already\n" if $sa;
	$timeout = $timeout_s;
	my %opts = (
		local_tests_only => $network_tests ? 0 : 1,
		dont_copy_prefs => 1,        # never write a default user_prefs
		require_rules => 1,          # no rules (sa-update never ran): fail
		post_config_text => "time_limit $timeout_s\n",
	);
	if (defined $site_dir) {
		die "site config directory $site_dir: not a directory\n" if !-d $site_dir;
		$opts{site_rules_filename} = $site_dir;
	}
	# Compile with a throw-away HOME, as spamd does, so that nothing is
	# created in root's home; user() sets the real one.
	my $tmphome = File::Temp::tempdir('mailprocd-spam-XXXXXX', TMPDIR => 1, CLEANUP => 0);
	local $ENV{HOME} = $tmphome;
	my $ok = eval {
		$sa = Mail::SpamAssassin->new(\%opts);
		$sa->compile_now(0, 1);
		1;
	};
	my $err = $@;
	File::Path::remove_tree($tmphome);
	if (!$ok) {
		undef $sa;
		die reason($err) . "\n";
	}
	# compile_now cleared it, but be sure no path of the temporary home stays.
	delete $sa->{conf}{sed_path_cache};
	return 1;
}

sub bayes_path {
	return undef if !$sa->{conf}{use_bayes} || !defined $sa->{conf}{bayes_path};
	return $sa->sed_path($sa->{conf}{bayes_path});
}

# Learning into the journal with no database yet has been seen to lose the
# journal at the next sync; an empty database made up front is cheap.
sub ensure_bayes_db {
	my $path = bayes_path();
	return if !defined $path || -e "${path}_toks";
	for my $p (@{ $sa->{plugins}{plugins} || [] }) {
		next if !$p->isa('Mail::SpamAssassin::Plugin::Bayes') || !$p->{store};
		$p->{store}->untie_db() if $p->{store}->tie_db_writable();
	}
}

sub user {
	my ($name, $home) = @_;
	die "SpamAssassin is not loaded\n" if !$sa;
	if (defined $user) {
		return 1 if $user->[0] eq $name && $user->[1] eq $home;
		die "already set up for user $user->[0]: a worker serves one user\n";
	}
	die "home directory $home: not an absolute path\n" if $home !~ m{^/};
	$ENV{HOME} = $home;
	# Paths expanded so far (~, __userstate__) are the spawner's.
	delete $sa->{conf}{sed_path_cache};
	# Scores and user-level options only: admin options such as
	# bayes_path are refused here, as spamd does.
	my $prefs = "$home/.spamassassin/user_prefs";
	$sa->read_scoreonly_config($prefs) if -e $prefs;
	# Learning (ours and auto-learning) goes to the journal, whatever the
	# user said; sync() merges it.  signal_user_changed applies this.
	$sa->{conf}{bayes_learn_to_journal} = 1;
	$sa->signal_user_changed({
		username => $name,
		user_dir => $home,
		userstate_dir => "$home/.spamassassin",
	});
	delete $sa->{conf}{sed_path_cache};
	$user = [$name, $home];
	eval { ensure_bayes_db(); 1 } or Mail::SpamAssassin::Logger::log_message('warn',
		'bayes: creating the database: ' . reason($@));
	return 1;
}

# The deadline of a check or learn: our limit, whatever user_prefs say
# (SpamAssassin uses the earlier of this and the time_limit setting).
sub deadline {
	return $timeout ? Time::HiRes::time() + $timeout : undef;
}

# Results go back to C as bytes.
sub octets {
	my ($s) = @_;
	utf8::encode($s) if defined $s && utf8::is_utf8($s);
	return $s;
}

sub need_user {
	die "SpamAssassin is not loaded\n" if !$sa;
	die "no user set up (spam_engine_user first)\n" if !defined $user;
}

sub check {
	need_user();
	my $mail = $sa->parse(\$_[0], 0, { master_deadline => deadline() });
	my $status;
	my @r = eval {
		$status = $sa->check($mail);
		my $tests = $status->get_names_of_tests_hit();
		my $headers = $status->get_tag('ADDEDHEADER');
		$headers .= "\n" if $headers ne '' && $headers !~ /\n\z/;
		# "ham autolearn_force=no": learned (to the journal) or not
		my $auto = $status->get_autolearn_status() // '';
		($status->is_spam() ? 1 : 0, $status->get_score(), $status->get_required_score(),
		 octets($tests), octets($headers), $status->{deadline_exceeded} ? 1 : 0,
		 $auto =~ /^(?:spam|ham)\b/ ? 1 : 0);
	};
	my $err = $@;
	$status->finish() if $status;
	$mail->finish();
	die reason($err) . "\n" if !@r;
	return @r;
}

sub learn {
	my (undef, $is_spam) = @_;
	need_user();
	die "Bayes is off for this user (use_bayes 0)\n"
		if !$sa->{conf}{use_bayes} || !$sa->{bayes_scanner};
	ensure_bayes_db();
	my $mail = $sa->parse(\$_[0], 0, { master_deadline => deadline() });
	my ($learned, $status);
	my $ok = eval {
		$status = $sa->learn($mail, undef, $is_spam ? 1 : 0, 0);
		$learned = $status->did_learn();
		1;
	};
	my $err = $@;
	$status->finish() if $status;
	$mail->finish();
	$sa->finish_learner();
	die reason($err) . "\n" if !$ok;
	die "Bayes learning is off (use_bayes 0) or its database cannot be opened\n"
		if !defined $learned;
	return $learned > 0 ? 1 : 0;
}

sub sync {
	need_user();
	# The journal into the database.  Not rebuild_learner_caches(): that
	# also forces a token expiry run every time; expiry is left to
	# SpamAssassin's own bayes_auto_expire.
	$sa->{bayes_scanner}->sync(1, 0) if $sa->{bayes_scanner};
	$sa->finish_learner();
	return 1;
}

sub finish {
	return 1 if !$sa;
	eval { sync() if defined $user; 1 }
		or Mail::SpamAssassin::Logger::log_message('warn', 'bayes: sync at exit: ' . reason($@));
	$sa->finish();
	undef $sa;
	undef $user;
	return 1;
}

1;
