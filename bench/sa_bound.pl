#!/usr/bin/perl
# sa_bound.pl - the in-process SpamAssassin bound for bench/spam_bench.py:
# what checking costs when nothing is spawned and nothing is sent anywhere.
#
#   bench/sa_bound.pl [--procs N] [--out PREFIX] [--warm WARMLIST] MANIFEST
#
# MANIFEST has one line per message, "HOME<TAB>FILE": the user's home (its
# Bayes data is HOME/.spamassassin) and the message.  Mail::SpamAssassin is
# loaded once (local tests only), compile_now, every message read into
# memory; then N children are forked (default: the number of cores), child
# k taking the users whose index mod N is k, each user's messages in a row,
# switching user as a mailprocd worker sets one up (signal_user_changed,
# learning to the journal).  Printed on stdout, one line:
#
#   checked=M spam=S seconds=T procs=N cpu=C warm_cpu=W minflt=F
#
# T runs from the first fork to the last child's exit; C is the CPU
# seconds (user + system) the children used, loading excluded.  So by
# default (cold) both include each child's fork, its copy-on-write first
# touches of the interpreter, its user switches and its first checks.
#
# With --warm, WARMLIST has one message file a line, none of MANIFEST's:
# child k first switches to its first user and checks line k (mod the
# lines), then reports ready and waits; the clock starts when every child
# is ready and the children are released together.  T then runs from that
# release to the last child's exit, and C leaves out what each child used
# until it was ready (printed as warm_cpu=W), F the minor faults it
# took until then (F: the children's minor page faults): steady state, as
# mailprocd's workers are once they have checked a message each.  With
# --out, child k writes "INDEX IS_SPAM SCORE" lines (INDEX counts
# MANIFEST lines from 0) to PREFIX.k.
use strict;
use warnings;

use File::Temp ();
use Getopt::Long qw(GetOptions);
use POSIX qw(_exit);
use Time::HiRes qw(time);
use Mail::SpamAssassin;

sub cores {
	open(my $fh, '<', '/proc/cpuinfo') or return 1;
	my $n = grep { /^processor\s*:/ } <$fh>;
	return $n || 1;
}

my $procs = cores();
my ($out, $warmlist);
my $usage = "usage: sa_bound.pl [--procs N] [--out PREFIX] [--warm WARMLIST] MANIFEST\n";
GetOptions('procs=i' => \$procs, 'out=s' => \$out, 'warm=s' => \$warmlist) or die $usage;
die $usage if @ARGV != 1;
die "sa_bound.pl: --procs must be at least 1\n" if $procs < 1;

# Every message in memory, grouped by home in order of first appearance.
my (@homes, %msgs);
open(my $mf, '<', $ARGV[0]) or die "sa_bound.pl: $ARGV[0]: $!\n";
my $index = 0;
while (my $line = <$mf>) {
	chomp $line;
	next if $line eq '';
	my ($home, $file) = split /\t/, $line, 2;
	die "sa_bound.pl: $ARGV[0] line " . ($index + 1) . ": expected HOME<TAB>FILE\n"
		if !defined $file || $home !~ m{^/};
	open(my $fh, '<:raw', $file) or die "sa_bound.pl: $file: $!\n";
	my $text = do { local $/; <$fh> };
	close $fh;
	push @homes, $home if !$msgs{$home};
	push @{ $msgs{$home} }, [$index++, $text];
}
close $mf;
die "sa_bound.pl: $ARGV[0]: no messages\n" if !$index;

# The warm-up messages, in memory too.
my @warm;
if (defined $warmlist) {
	open(my $wl, '<', $warmlist) or die "sa_bound.pl: $warmlist: $!\n";
	while (my $file = <$wl>) {
		chomp $file;
		next if $file eq '';
		open(my $fh, '<:raw', $file) or die "sa_bound.pl: $file: $!\n";
		push @warm, do { local $/; <$fh> };
		close $fh;
	}
	close $wl;
	die "sa_bound.pl: $warmlist: no messages\n" if !@warm;
}

# Loaded and compiled once, with a throw-away HOME, as mailprocd's spawner
# does; the children inherit it by fork.
my $tmphome = File::Temp::tempdir('sa-bound-XXXXXX', TMPDIR => 1, CLEANUP => 1);
$ENV{HOME} = $tmphome;
my $sa = Mail::SpamAssassin->new({
	local_tests_only => 1,
	dont_copy_prefs => 1,
	require_rules => 1,
});
$sa->compile_now(0, 1);
delete $sa->{conf}{sed_path_cache};

# The user whose Bayes data is set up (the warm-up sets up the first).
my $current = -1;

sub switch_user {
	my ($u) = @_;
	my $home = $homes[$u];
	$ENV{HOME} = $home;
	delete $sa->{conf}{sed_path_cache};
	$sa->signal_user_changed({ username => "u$u", user_dir => $home,
	                           userstate_dir => "$home/.spamassassin" });
	delete $sa->{conf}{sed_path_cache};
	$sa->init_learner({ learn_to_journal => 1 });
	$current = $u;
}

# Minor page faults of this process so far (field 10 of /proc/self/stat).
sub own_minflt {
	open(my $fh, '<', '/proc/self/stat') or return 0;
	my $stat = <$fh>;
	close $fh;
	$stat =~ s/^.*\) //s;
	return (split ' ', $stat)[7];
}

sub own_cpu {
	my (undef, $user, $sys) = POSIX::times();
	return ($user + $sys) / POSIX::sysconf(POSIX::_SC_CLK_TCK());
}

# --warm: one check as the first user, then "ready CPU" on $w and wait
# for the parent to close $go.
sub warm_up {
	my ($k, $w, $go) = @_;
	switch_user($k) if $k < @homes;
	my $mail = $sa->parse(\$warm[$k % @warm], 0);
	my $status = $sa->check($mail);
	$status->finish();
	$mail->finish();
	printf $w "ready %.3f %d\n", own_cpu(), own_minflt();
	$w->flush();
	my $buf;
	sysread($go, $buf, 1);
}

sub child {
	my ($k) = @_;
	my $fh;
	if (defined $out) {
		open($fh, '>', "$out.$k") or die "sa_bound.pl: $out.$k: $!\n";
	}
	my $spam = 0;
	for (my $u = $k; $u < @homes; $u += $procs) {
		my $home = $homes[$u];
		switch_user($u) if $u != $current;
		for my $m (@{ $msgs{$home} }) {
			my $mail = $sa->parse(\$m->[1], 0);
			my $status = $sa->check($mail);
			my $is = $status->is_spam() ? 1 : 0;
			$spam += $is;
			printf $fh "%d %d %.1f\n", $m->[0], $is, $status->get_score() if $fh;
			$status->finish();
			$mail->finish();
		}
		$sa->finish_learner();
	}
	close $fh if $fh;
	return $spam;
}

# Each child reports its spam count on a pipe of its own (warm: after
# its "ready" line); the go pipe, closed by the parent, releases them all.
my ($go_r, $go_w);
if (@warm) {
	pipe($go_r, $go_w) or die "sa_bound.pl: pipe: $!\n";
}
my $start = time;
my @kids;
for my $k (0 .. $procs - 1) {
	pipe(my $r, my $w) or die "sa_bound.pl: pipe: $!\n";
	my $pid = fork();
	die "sa_bound.pl: fork: $!\n" if !defined $pid;
	if ($pid == 0) {
		close $r;
		if (@warm) {
			close $go_w;
			if (!eval { warm_up($k, $w, $go_r); 1 }) {
				print STDERR "sa_bound.pl: child $k: warm-up: $@";
				_exit(1);
			}
		}
		my $spam = eval { child($k) };
		if (!defined $spam) {
			print STDERR "sa_bound.pl: child $k: $@";
			_exit(1);
		}
		printf $w "%d %d\n", $spam, own_minflt();
		close $w;
		_exit(0);
	}
	close $w;
	push @kids, [$pid, $r];
}
my ($spam, $failed, $warm_cpu, $minflt) = (0, 0, 0, 0);
if (@warm) {
	close $go_r;
	for my $kid (@kids) {
		my $line = readline($kid->[1]);
		die "sa_bound.pl: a child failed its warm-up\n"
			if !defined $line || $line !~ /^ready ([0-9.]+) ([0-9]+)$/;
		$warm_cpu += $1;
		$minflt -= $2;
	}
	$start = time;
	close $go_w;
}
for my $kid (@kids) {
	my $line = readline($kid->[1]);
	waitpid($kid->[0], 0);
	if ($? != 0 || !defined $line) {
		$failed++;
		next;
	}
	my ($n, $faults) = split ' ', $line;
	$spam += $n;
	$minflt += $faults;
}
my $seconds = time - $start;
my (undef, undef, undef, $cuser, $csys) = POSIX::times();
my $cpu = ($cuser + $csys) / POSIX::sysconf(POSIX::_SC_CLK_TCK()) - $warm_cpu;
die "sa_bound.pl: $failed of $procs children failed\n" if $failed;
printf "checked=%d spam=%d seconds=%.3f procs=%d cpu=%.2f warm_cpu=%.2f minflt=%d\n", $index,
	$spam, $seconds, $procs, $cpu, $warm_cpu, $minflt;
$sa->finish();
